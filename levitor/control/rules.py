"""Which rules turn a scene into its control signal: levitor's own, or exactly the official release's.

The released LeviTor ControlNet was trained and evaluated inside the release's code, so generating with it builds
the control the release's way (``ControlRules.named("release")``, what :func:`levitor.generation.generate.generate`
picks for the released weights). levitor's own rules (``"levitor"``) are the default elsewhere: temporally stable
K-means points for the Studio's live view, and what levitor-trained models were trained with. Per rule:

=============  ==============================================  ==================================================
field          "levitor"                                       "release"
=============  ==============================================  ==================================================
kmeans         "warm": each frame starts from the last          "release": the release's init as it runs (NumPy
               frame's centres (stable points)                  ``in`` test, stale samples), sklearn's stopping
                                                                rule in float32, K checked before the scale factor
instances      a selected mask keeps all its pixels;            every mask, selected ones too: the whole overlap
               per overlapped mask, the larger one wins         goes by its most frequent id; cleared first
point_depth    "path": a moved object's path depth              "map": the frame's rendered depth map at the point
render         per pixel, a moved pixel shows where it is at    per object, its path depth against the frame's
               least as near as the scene; vacated pixels:      depth map (1.0 on moved objects' own pixels and
               the strip's id, depth inpainted                  unlabelled ones); holes: the release's fill id
=============  ==============================================  ==================================================

See REFERENCE.md ("Exact details that decide compatibility") for the release's rules in full.
"""

from __future__ import annotations

from dataclasses import dataclass

RULE_SET_NAMES = ("levitor", "release")
KMEANS = ("warm", "release", "even")  # "even": every frame from its evenly spaced samples (one-frame drafts)
INSTANCES = ("levitor", "release")
POINT_DEPTHS = ("path", "map")
RENDERS = ("levitor", "release")


@dataclass(frozen=True)
class ControlRules:
    """The rules of the control signal, one field per place where levitor and the release differ."""

    kmeans: str = "warm"          # K-means init and stopping across frames
    instances: str = "levitor"    # first-frame instance-map assembly
    point_depth: str = "path"     # the depth channel's value at a moved object's point
    render: str = "levitor"       # occlusion of moved objects, vacated pixels and hole filling

    def __post_init__(self) -> None:
        for name, allowed in (("kmeans", KMEANS), ("instances", INSTANCES), ("point_depth", POINT_DEPTHS),
                              ("render", RENDERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ControlRules.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def named(cls, name: str | ControlRules) -> ControlRules:
        """``"levitor"`` or ``"release"`` (a ControlRules passes through)."""
        if isinstance(name, ControlRules):
            return name
        if name == "levitor":
            return cls()
        if name == "release":
            return cls(kmeans="release", instances="release", point_depth="map", render="release")
        raise ValueError(f"control rules must be one of {RULE_SET_NAMES} (or a ControlRules), got {name!r}")

    @property
    def name(self) -> str:
        """"levitor", "release", or "custom" for a mix."""
        for n in RULE_SET_NAMES:
            if self == ControlRules.named(n):
                return n
        return "custom"

    def describe(self) -> str:
        """One line for logs and benchmarks: which behaviour each rule has."""
        return (f"control rules '{self.name}' (K-means {self.kmeans}, instances {self.instances}, "
                f"point depth {self.point_depth}, render {self.render})")
