"""IFC models (what Revit exports) to labelled scenes and clouds, and parametric cages to IFC.

Reading (``read_ifc``) turns every element with geometry into part of a ``Scene``:

* ``IfcReinforcingBar`` -> rebar, role ``main`` or ``tie`` (see "Roles" below). When the
  bar's Body is made of ``IfcSweptDiskSolid`` items (how Revit and most exporters write
  bars: a disk swept along a directrix polyline), each item becomes one ``Bar`` from its
  directrix and radius, so it is meshed by ``geometry.tube_mesh`` exactly like a
  parametric cage. A directrix that is not an ``IfcPolyline`` (``IfcIndexedPolyCurve``,
  ``IfcCompositeCurve`` with arcs, ...) is discretised by ifcopenshell's own curve
  evaluator. Any other body (breps, extrusions, booleans) is tessellated with
  ``ifcopenshell.geom.create_shape`` in world coordinates and kept as a labelled triangle
  mesh (``IfcScene.meshed_bars``). ``IfcReinforcingMesh`` (welded fabric) is tessellated
  and labelled ``main``: it is steel reinforcement, and background would teach the model
  to call bars concrete.
* every other ``IfcElement`` with a representation (IfcSlab, IfcColumn, IfcWall, IfcBeam,
  IfcFooting, IfcBuildingElementProxy, IfcPipeSegment, ...) -> a background ``Solid``,
  tessellated in world coordinates. Openings and other subtraction features and virtual
  elements are not surfaces and are skipped. Material: the element's IfcMaterial name
  if it names a project material or a known word (steel, timber, plywood, soil, gravel,
  pvc, ...), else by class (pipes/ducts -> pvc_pipe, everything else -> concrete).

Units: coordinates and radii are converted to metres with the project's length unit
(``ifcopenshell.util.unit.calculate_unit_scale``); ifcopenshell's tessellator already
outputs metres.

Roles. ``ROLE_BY_PREDEFINED_TYPE`` maps ``IfcReinforcingBarTypeEnum`` (IFC2x3:
``BarRole``) to the project roles: bars that enclose or cross-tie other bars (SHEAR
stirrups, LIGATURE links/ties, RING hoops, STUD and PUNCHING shear studs/links,
SPACEBAR spacers) are ``tie``; longitudinal (MAIN), EDGE (perimeter / edge bars) and
ANCHORING (anchorage, starter bars) are ``main``. For USERDEFINED and NOTDEFINED the
bar's ObjectType, Name and type name are tried against name patterns first
(``DEFAULT_NAME_PATTERNS``: Revit users name ties "Stirrup", "Tie", "Link", "Hoop"...;
no default main pattern, since Revit names every bar "Rebar Bar: ..."), then the map
(NOTDEFINED -> main), then ``default_role``. Patterns passed by the caller take
precedence over the predefined type for every bar.

Writing (``write_ifc``) stores a Scene's bars as ``IfcReinforcingBar`` (MAIN for main,
LIGATURE for ties) with an ``IfcSweptDiskSolid`` body along an ``IfcPolyline``, built
with ifcopenshell's API (project, units, contexts, site/building/storey), so parametric
cages round-trip through IFC. Context solids are written as IfcBuildingElementProxy
triangulated meshes when ``include_context`` is set.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from data_tools.io import PointCloud
from data_tools.rebar.mesh import LabeledMesh, merge_meshes, scene_to_mesh
from data_tools.rebar.model import MATERIAL_NAMES, MATERIALS, ROLE_LABEL, Bar, Scene, Solid
from data_tools.splits import DatasetFileError

__all__ = ["DEFAULT_NAME_PATTERNS", "ROLE_BY_PREDEFINED_TYPE", "IfcScene", "MeshedBar",
           "ifc_scene_to_mesh", "ifc_to_cloud", "read_ifc", "write_ifc"]

# IfcReinforcingBarTypeEnum (IFC4) / IfcReinforcingBarRoleEnum (IFC2x3) -> project role.
# None: decided by names (ObjectType / Name), then default_role.
ROLE_BY_PREDEFINED_TYPE = MappingProxyType({
    "MAIN": "main",  # longitudinal bars
    "SHEAR": "tie",  # stirrups
    "LIGATURE": "tie",  # links / ties around longitudinal bars
    "STUD": "tie",  # shear studs
    "PUNCHING": "tie",  # punching-shear links
    "EDGE": "main",  # edge / perimeter bars run along the element
    "RING": "tie",  # hoops
    "ANCHORING": "main",  # anchorage and starter bars continue the longitudinal bars
    "SPACEBAR": "tie",  # spacer bars / chairs between layers: small, transverse
    "USERDEFINED": None,  # ObjectType says what it is: name patterns, then default_role
    "NOTDEFINED": "main",  # after name patterns: most bars in a model are main bars
})

# Role -> regex on ObjectType / Name / type name; "tie" is tested before "main".
DEFAULT_NAME_PATTERNS = MappingProxyType({
    "tie": r"(?i)stirrup|\btie|\blink|hoop|spiral|ligature|shear|ring\b",
    "main": r"(?i)longitudinal|\bmain\b",
})

_BACKGROUND_MATERIAL_WORDS = (  # IfcMaterial name regex -> project material, first match wins
    (r"(?i)plywood", "plywood"),
    (r"(?i)timber|wood|formwork", "timber_formwork"),
    (r"(?i)soil|earth|ground", "soil"),
    (r"(?i)gravel|aggregate|ballast", "gravel"),
    (r"(?i)pvc|plastic", "pvc_pipe"),
    (r"(?i)steel|metal|iron", "steel"),
    (r"(?i)concrete|cement|grout|mortar", "concrete"),
)
_SKIP_CLASSES = ("IfcFeatureElementSubtraction", "IfcVirtualElement", "IfcReinforcingBar")


@dataclass(eq=False)
class MeshedBar:
    """A rebar element whose body is not a swept disk: its tessellation, in metres."""

    vertices: np.ndarray  # (V, 3)
    triangles: np.ndarray  # (T, 3)
    role: str
    material: str = "rusty_steel"
    kind: str = ""


@dataclass(eq=False)
class IfcScene(Scene):
    """A Scene plus the rebar that had to be tessellated (``ifc_scene_to_mesh`` meshes both)."""

    meshed_bars: list[MeshedBar] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# reading


def read_ifc(path: str | Path, role_map: Mapping[str, str | None] | None = None,
             name_patterns: Mapping[str, str] | None = None, *, allow_no_rebar: bool = False,
             default_role: str = "main") -> IfcScene:
    """Read an IFC file into an ``IfcScene`` (metres). See the module docstring.

    role_map: overrides / extends ``ROLE_BY_PREDEFINED_TYPE`` (keys are upper-cased).
    name_patterns: role -> regex tried on ObjectType, Name and type name, taking precedence
    over the predefined type; None uses ``DEFAULT_NAME_PATTERNS`` for USERDEFINED /
    NOTDEFINED bars only. Raises DatasetFileError naming the file for a missing, unreadable
    or non-IFC file, and for a file without rebar unless ``allow_no_rebar``.
    """
    import ifcopenshell
    import ifcopenshell.geom
    import ifcopenshell.util.unit

    path = Path(path)
    roles = _merge_role_map(role_map)
    if default_role not in ("main", "tie"):
        raise ValueError(f"default_role must be 'main' or 'tie', got {default_role!r}")
    patterns = _compile_patterns(name_patterns)
    if not path.is_file():
        raise DatasetFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetFileError(f"{path}: empty file (0 bytes)")
    try:
        model = ifcopenshell.open(str(path))
    except Exception as exc:  # ifcopenshell.Error, OSError, RuntimeError from the parser
        raise DatasetFileError(f"{path}: not a readable IFC file ({type(exc).__name__}: {exc})") from None
    try:
        return _scene_from_model(model, path, roles, patterns, name_patterns is not None, allow_no_rebar,
                                 default_role)
    except DatasetFileError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError, AssertionError) as exc:
        # A file that parses but whose entities are broken (found by tests/fuzzing.py: a
        # truncated reference, a point with the wrong arity) fails deep in ifcopenshell -
        # its util.placement asserts on a placement's point arity (a truncated file, case 318).
        raise DatasetFileError(f"{path}: corrupt IFC model ({type(exc).__name__}: {exc})") from None


def _scene_from_model(model, path: Path, roles, patterns, patterns_given: bool, allow_no_rebar: bool,
                      default_role: str) -> IfcScene:
    import ifcopenshell.geom
    import ifcopenshell.util.unit

    if not model.by_type("IfcProject"):
        raise DatasetFileError(f"{path}: not an IFC model (no IfcProject; schema {model.schema})")
    scale = float(ifcopenshell.util.unit.calculate_unit_scale(model))

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)  # 0.8 and 0.9: world coordinates, metres
    curve_settings = ifcopenshell.geom.settings()

    rebar_elements = model.by_type("IfcReinforcingBar")
    if not rebar_elements and not allow_no_rebar:
        raise DatasetFileError(
            f"{path}: no IfcReinforcingBar in the model: the cloud would have no rebar labels "
            "(pass allow_no_rebar=True to read it as background only)")

    scene = IfcScene(bars=[], context=[], element="ifc", seed=0)
    skipped: list[str] = []
    for el in rebar_elements:
        role = _bar_role(el, roles, patterns, patterns_given, default_role)
        material = _bar_material(el)
        kind = _bar_kind(el)
        swept = _swept_bars(el, scale, curve_settings)
        if swept is not None:
            scene.bars += [Bar(poly, radius, role, material, kind) for poly, radius in swept]
            continue
        tess = _tessellate(el, settings)
        if tess is None:
            skipped.append(f"#{el.id()} {el.is_a()}")
            continue
        scene.meshed_bars.append(MeshedBar(*tess, role=role, material=material, kind=kind))

    for el in model.by_type("IfcElement"):
        if el.Representation is None or any(el.is_a(c) for c in _SKIP_CLASSES):
            continue
        tess = _tessellate(el, settings)
        if tess is None:
            skipped.append(f"#{el.id()} {el.is_a()}")
            continue
        if el.is_a("IfcReinforcingMesh"):
            scene.meshed_bars.append(MeshedBar(*tess, role="main", material=_bar_material(el),
                                               kind="reinforcing_mesh"))
        else:
            scene.context.append(Solid(*tess, material=_background_material(el), kind=el.is_a()))

    if skipped:
        warnings.warn(f"{path}: {len(skipped)} element(s) without usable geometry skipped: "
                      + ", ".join(skipped[:10]), stacklevel=2)
    n_rebar = len(scene.bars) + len(scene.meshed_bars)
    if n_rebar == 0 and rebar_elements and not allow_no_rebar:
        raise DatasetFileError(f"{path}: {len(rebar_elements)} IfcReinforcingBar element(s) but "
                               "none has usable geometry: the cloud would have no rebar labels")
    if n_rebar == 0 and not scene.context:
        raise DatasetFileError(f"{path}: no element with geometry in the model")
    by_role = {r: sum(b.role == r for b in scene.bars) + sum(b.role == r for b in scene.meshed_bars)
               for r in ("main", "tie")}
    scene.params = {"source": str(path), "schema": model.schema, "length_unit_m": scale,
                    "swept_bars": len(scene.bars), "meshed_bars": len(scene.meshed_bars),
                    "bars_by_role": by_role, "context_objects": len(scene.context),
                    "skipped": skipped}
    return scene


def ifc_scene_to_mesh(scene: Scene, sides: int = 12) -> LabeledMesh:
    """``scene_to_mesh`` plus an IfcScene's tessellated rebar (object ids after the context)."""
    meshed = list(getattr(scene, "meshed_bars", []))
    parts = []
    if scene.bars or scene.context:
        parts.append(scene_to_mesh(Scene(scene.bars, scene.context, scene.element), sides))
    index = {name: i for i, name in enumerate(MATERIAL_NAMES)}
    first_id = int(parts[0].object_ids.max()) + 1 if parts else 0
    for k, mb in enumerate(meshed):
        t = len(mb.triangles)
        parts.append(LabeledMesh(np.asarray(mb.vertices, np.float64), np.asarray(mb.triangles, np.int64),
                                 np.full(t, first_id + k, np.int32),
                                 np.full(t, ROLE_LABEL[mb.role], np.int64),
                                 np.full(t, index[mb.material], np.int32)))
    if not parts:
        raise ValueError("scene has no bars and no context: nothing to mesh")
    return merge_meshes(*parts)


def ifc_to_cloud(path: str | Path, density: float = 20000.0, seed: int = 0, **read_kwargs) -> PointCloud:
    """Labelled surface-sampled cloud of an IFC model, like a parametric cage's source cloud.

    ``density`` is points per square metre; ``read_kwargs`` go to ``read_ifc``.
    """
    from data_tools.rebar.sampling import sample_surface

    scene = read_ifc(path, **read_kwargs)
    return sample_surface(ifc_scene_to_mesh(scene), density, np.random.default_rng(seed))


def _merge_role_map(role_map: Mapping[str, str | None] | None) -> dict[str, str | None]:
    roles = dict(ROLE_BY_PREDEFINED_TYPE)
    for key, role in (role_map or {}).items():
        if role not in ("main", "tie", None):
            raise ValueError(f"role_map[{key!r}] must be 'main', 'tie' or None, got {role!r}")
        roles[str(key).upper()] = role
    return roles


def _compile_patterns(name_patterns: Mapping[str, str] | None) -> list[tuple[str, re.Pattern]]:
    pats = dict(DEFAULT_NAME_PATTERNS if name_patterns is None else name_patterns)
    bad = [r for r in pats if r not in ("main", "tie")]
    if bad:
        raise ValueError(f"name_patterns keys must be 'main' or 'tie', got {bad}")
    order = [r for r in ("tie", "main") if r in pats]
    try:
        return [(r, re.compile(pats[r])) for r in order]
    except re.error as exc:
        raise ValueError(f"bad name pattern: {exc}") from None


def _predefined_type(el) -> str:
    value = getattr(el, "PredefinedType", None) if hasattr(el, "PredefinedType") else None
    if value is None and hasattr(el, "BarRole"):  # IFC2x3
        value = el.BarRole
    if value in (None, "NOTDEFINED"):
        import ifcopenshell.util.element

        etype = ifcopenshell.util.element.get_type(el)  # the type may carry it
        tval = getattr(etype, "PredefinedType", None) if etype is not None else None
        if tval not in (None, "NOTDEFINED"):
            value = tval
    return str(value or "NOTDEFINED").upper()


def _names(el) -> list[str]:
    import ifcopenshell.util.element

    names = [getattr(el, "ObjectType", None), el.Name, getattr(el, "Description", None)]
    etype = ifcopenshell.util.element.get_type(el)
    if etype is not None:
        names += [etype.Name, getattr(etype, "ElementType", None)]
    return [n for n in names if n]


def _bar_role(el, roles, patterns, explicit_patterns: bool, default_role: str) -> str:
    ptype = _predefined_type(el)
    by_name = next((r for r, p in patterns if any(p.search(n) for n in _names(el))), None)
    if explicit_patterns and by_name:
        return by_name
    if ptype in ("USERDEFINED", "NOTDEFINED") and by_name:
        return by_name
    return roles.get(ptype) or default_role


def _bar_kind(el) -> str:
    """write_ifc's Name (a lower-case identifier like 'longitudinal'), else the type."""
    name = el.Name or ""
    return name if re.fullmatch(r"[a-z][a-z0-9_]*", name) else _predefined_type(el).lower()


def _material_names(el) -> list[str]:
    import ifcopenshell.util.element

    mat = ifcopenshell.util.element.get_material(el)
    if mat is None:
        return []
    if mat.is_a("IfcMaterial"):
        return [mat.Name or ""]
    found = []  # sets, lists, usages: collect every IfcMaterial below
    for attr in ("Materials", "MaterialLayers", "MaterialConstituents", "MaterialProfiles",
                 "ForLayerSet", "ForProfileSet"):
        val = getattr(mat, attr, None) if hasattr(mat, attr) else None
        for item in val if isinstance(val, (list, tuple)) else [val] if val is not None else []:
            sub = getattr(item, "Material", item)
            if sub is not None and sub.is_a("IfcMaterial"):
                found.append(sub.Name or "")
            for layer in getattr(sub, "MaterialLayers", None) or []:
                if layer.Material is not None:
                    found.append(layer.Material.Name or "")
    return found


def _bar_material(el) -> str:
    names = [n for n in _material_names(el) if n in MATERIALS]
    return names[0] if names else "rusty_steel"


def _background_material(el) -> str:
    names = _material_names(el)
    for name in names:
        if name in MATERIALS:
            return name
    for name in names:
        for pattern, material in _BACKGROUND_MATERIAL_WORDS:
            if re.search(pattern, name):
                return material
    if any(el.is_a(c) for c in ("IfcPipeSegment", "IfcDuctSegment", "IfcFlowSegment")):
        return "pvc_pipe"
    return "concrete"


def _tessellate(el, settings) -> tuple[np.ndarray, np.ndarray] | None:
    import ifcopenshell.geom

    try:
        shape = ifcopenshell.geom.create_shape(settings, el)
    except Exception:  # RuntimeError from the kernel: no body, bad geometry
        return None
    verts = np.asarray(shape.geometry.verts, dtype=np.float64).reshape(-1, 3)
    tris = np.asarray(shape.geometry.faces, dtype=np.int64).reshape(-1, 3)
    if len(tris) == 0 or not np.isfinite(verts).all():
        return None
    return verts, tris


def _body_items(el) -> list[tuple[object, np.ndarray]] | None:
    """(item, 4x4 transform in file units) of the Body representation, mapped items resolved."""
    import ifcopenshell.util.placement

    reps = list(el.Representation.Representations) if el.Representation else []
    body = [r for r in reps if (r.RepresentationIdentifier or "") == "Body"] or \
        [r for r in reps if (r.RepresentationIdentifier or "") in ("", "Body-Fallback")]
    place = ifcopenshell.util.placement.get_local_placement(el.ObjectPlacement) \
        if el.ObjectPlacement is not None else np.eye(4)
    out: list[tuple[object, np.ndarray]] = []

    def walk(items, matrix, depth):
        for item in items:
            if item.is_a("IfcMappedItem") and depth < 8:
                m = ifcopenshell.util.placement.get_mappeditem_transformation(item)
                if m is None:
                    return False
                if not walk(item.MappingSource.MappedRepresentation.Items, matrix @ m, depth + 1):
                    return False
            else:
                out.append((item, matrix))
        return True

    for rep in body:
        if not walk(rep.Items, np.asarray(place, float), 0):
            return None
    return out


def _swept_bars(el, scale: float, curve_settings) -> list[tuple[np.ndarray, float]] | None:
    """[(polyline m, radius m)] if every Body item is an IfcSweptDiskSolid, else None."""
    items = _body_items(el)
    if not items or not all(item.is_a("IfcSweptDiskSolid") for item, _ in items):
        return None
    bars = []
    for item, matrix in items:
        pts = _directrix_points(item, scale, curve_settings)
        if pts is None or len(pts) < 2:
            return None
        world = (pts @ matrix[:3, :3].T + matrix[:3, 3]) * scale
        # a transform may scale uniformly (mapped items): scale the radius with it
        radius = float(item.Radius) * scale * float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))
        bars.append((world, radius))
    return bars


def _directrix_points(item, scale: float, curve_settings) -> np.ndarray | None:
    """Directrix vertices in file units (IfcPolyline exact, other curves discretised)."""
    curve = item.Directrix
    if curve.is_a("IfcPolyline"):
        pts = np.array([tuple(p.Coordinates) + (0.0,) * (3 - len(p.Coordinates))
                        for p in curve.Points], dtype=np.float64)
        s, e = item.StartParam, item.EndParam  # IfcPolyline: parameter i at vertex i
        n = len(pts) - 1
        if s is not None and e is not None and e > s and (s > 1e-9 or e < n - 1e-9):
            pts = _trim(pts, max(float(s), 0.0), min(float(e), n))
        return pts
    import ifcopenshell.geom

    try:
        shape = ifcopenshell.geom.create_shape(curve_settings, curve)
    except Exception:
        return None
    verts = np.asarray(shape.verts, dtype=np.float64).reshape(-1, 3)
    edges = np.asarray(shape.edges, dtype=np.int64).reshape(-1, 2)
    path = _chain(edges)
    if path is None:
        return None
    # the curve evaluator outputs metres: back to file units, like the placement
    return verts[path] / scale


def _trim(pts: np.ndarray, s: float, e: float) -> np.ndarray:
    def at(t):
        i = min(int(np.floor(t)), len(pts) - 2)
        return pts[i] + (t - i) * (pts[i + 1] - pts[i])

    inner = [pts[i] for i in range(int(np.floor(s)) + 1, int(np.ceil(e))) if s < i < e]
    return np.array([at(s), *inner, at(e)])


def _chain(edges: np.ndarray) -> list[int] | None:
    """Order the edges of one open or closed polyline into a vertex path."""
    if len(edges) == 0:
        return None
    nxt: dict[int, int] = {}
    indeg: dict[int, int] = {}
    for a, b in edges:
        if a in nxt:  # branching: not a single curve
            return None
        nxt[int(a)] = int(b)
        indeg[int(b)] = indeg.get(int(b), 0) + 1
    starts = [a for a in nxt if a not in indeg]
    start = starts[0] if starts else int(edges[0, 0])
    path, seen = [start], {start}
    while path[-1] in nxt:
        v = nxt[path[-1]]
        path.append(v)
        if v in seen:
            break
        seen.add(v)
    return path if len(path) == len(edges) + 1 else None


# ---------------------------------------------------------------------------------------
# writing


_UNIT_PREFIX = {"m": None, "mm": "MILLI", "cm": "CENTI"}
_UNIT_SCALE = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


def write_ifc(scene: Scene, path: str | Path, *, length_unit: str = "m", schema: str = "IFC4",
              include_context: bool = False) -> Path:
    """Write the scene's bars as IfcReinforcingBar (MAIN / LIGATURE) with swept-disk bodies.

    Each bar is one IfcReinforcingBar, Name = its kind, Body = IfcSweptDiskSolid along an
    IfcPolyline (in ``length_unit``: "m", "cm" or "mm"), NominalDiameter set, material =
    an IfcMaterial named after the bar's material. With ``include_context`` the context
    solids are written too, as IfcBuildingElementProxy triangle meshes with their material.
    """
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.geometry
    import ifcopenshell.api.material
    import ifcopenshell.api.project
    import ifcopenshell.api.root
    import ifcopenshell.api.spatial
    import ifcopenshell.api.unit

    if length_unit not in _UNIT_PREFIX:
        raise ValueError(f"length_unit must be one of {list(_UNIT_PREFIX)}, got {length_unit!r}")
    api = ifcopenshell.api
    k = 1.0 / _UNIT_SCALE[length_unit]  # metres -> file units
    f = api.project.create_file(version=schema)
    project = api.root.create_entity(f, ifc_class="IfcProject", name=f"{scene.element} seed {scene.seed}")
    length = api.unit.add_si_unit(f, unit_type="LENGTHUNIT", prefix=_UNIT_PREFIX[length_unit])
    api.unit.assign_unit(f, units=[length])
    model_ctx = api.context.add_context(f, context_type="Model")
    body = api.context.add_context(f, context_type="Model", context_identifier="Body",
                                   target_view="MODEL_VIEW", parent=model_ctx)
    site = api.root.create_entity(f, ifc_class="IfcSite", name="Site")
    building = api.root.create_entity(f, ifc_class="IfcBuilding", name="Building")
    storey = api.root.create_entity(f, ifc_class="IfcBuildingStorey", name="Level 0")
    api.aggregate.assign_object(f, products=[site], relating_object=project)
    api.aggregate.assign_object(f, products=[building], relating_object=site)
    api.aggregate.assign_object(f, products=[storey], relating_object=building)

    materials: dict[str, object] = {}

    def material(name: str):
        if name not in materials:
            materials[name] = api.material.add_material(f, name=name)
        return materials[name]

    products = []
    by_material: dict[str, list] = {}
    for i, bar in enumerate(scene.bars):
        ptype = "MAIN" if bar.role == "main" else "LIGATURE"
        el = api.root.create_entity(f, ifc_class="IfcReinforcingBar", predefined_type=ptype,
                                    name=bar.kind or bar.role)
        el.Tag = str(i)
        el.NominalDiameter = 2 * bar.radius * k
        api.geometry.edit_object_placement(f, product=el)  # identity: coordinates are world
        points = [f.createIfcCartesianPoint([float(c) * k for c in p]) for p in bar.polyline]
        solid = f.createIfcSweptDiskSolid(f.createIfcPolyline(points), float(bar.radius) * k)
        rep = f.createIfcShapeRepresentation(body, "Body", "AdvancedSweptSolid", [solid])
        api.geometry.assign_representation(f, product=el, representation=rep)
        products.append(el)
        by_material.setdefault(bar.material, []).append(el)
    if include_context:
        for solid in scene.context:
            el = api.root.create_entity(f, ifc_class="IfcBuildingElementProxy", name=solid.kind)
            api.geometry.edit_object_placement(f, product=el)
            rep = api.geometry.add_mesh_representation(
                f, context=body, vertices=[np.asarray(solid.vertices, float).tolist()],  # metres (SI)
                faces=[np.asarray(solid.triangles, int).tolist()])
            api.geometry.assign_representation(f, product=el, representation=rep)
            products.append(el)
            by_material.setdefault(solid.material, []).append(el)
    for name, els in by_material.items():
        api.material.assign_material(f, products=els, type="IfcMaterial", material=material(name))
    if products:
        api.spatial.assign_container(f, products=products, relating_structure=storey)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f.write(str(path))
    return path
