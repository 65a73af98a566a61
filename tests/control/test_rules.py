"""ControlRules: the one switch between levitor's control rules and the release's."""

import pytest

from levitor.control.rules import ControlRules


def test_named_rule_sets_and_their_fields():
    lev, rel = ControlRules.named("levitor"), ControlRules.named("release")
    assert (lev.kmeans, lev.instances, lev.point_depth, lev.render) == ("warm", "levitor", "path", "levitor")
    assert (rel.kmeans, rel.instances, rel.point_depth, rel.render) == ("release", "release", "map", "release")
    assert lev.name == "levitor" and rel.name == "release" and ControlRules.named(rel) is rel
    mixed = ControlRules(kmeans="release")
    assert mixed.name == "custom" and "K-means release" in mixed.describe()
    with pytest.raises(ValueError, match="must be one of"):
        ControlRules.named("official")
    with pytest.raises(ValueError, match=r"ControlRules.point_depth must be one of \('path', 'map'\)"):
        ControlRules(point_depth="centre")


def test_engine_takes_the_rules_and_init_overrides_only_the_kmeans():
    from levitor.engine import Engine
    from tests.conftest import make_scene

    e = Engine(make_scene(), rules="release", init="warm")
    assert e.rules == ControlRules(kmeans="warm", instances="release", point_depth="map", render="release")
    assert e.init == "warm" and Engine(make_scene()).rules.name == "levitor"
