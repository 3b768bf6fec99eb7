"""IFC import / export of rebar scenes: files are written here with ifcopenshell's own API."""

from __future__ import annotations

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.project
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit
import numpy as np
import pytest

from data_tools.__main__ import main
from data_tools.io import read_cloud
from data_tools.rebar.cages import make_scene
from data_tools.rebar.ifc import (
    ROLE_BY_PREDEFINED_TYPE,
    ifc_scene_to_mesh,
    ifc_to_cloud,
    read_ifc,
    write_ifc,
)
from data_tools.splits import DatasetFileError

api = ifcopenshell.api


# ---- a tiny hand-built model ---------------------------------------------------------

class Model:
    """An IFC4 project with one storey; lengths given in metres, stored in `unit`."""

    def __init__(self, unit: str = "m") -> None:
        self.k = {"m": 1.0, "mm": 1000.0}[unit]
        f = self.f = api.project.create_file(version="IFC4")
        project = api.root.create_entity(f, ifc_class="IfcProject", name="test")
        length = api.unit.add_si_unit(f, unit_type="LENGTHUNIT", prefix="MILLI" if unit == "mm" else None)
        api.unit.assign_unit(f, units=[length])
        model = api.context.add_context(f, context_type="Model")
        self.body = api.context.add_context(f, context_type="Model", context_identifier="Body",
                                            target_view="MODEL_VIEW", parent=model)
        site = api.root.create_entity(f, ifc_class="IfcSite")
        self.storey = api.root.create_entity(f, ifc_class="IfcBuildingStorey")
        api.aggregate.assign_object(f, products=[site], relating_object=project)
        api.aggregate.assign_object(f, products=[self.storey], relating_object=site)

    def _place(self, el, items, offset=(0.0, 0.0, 0.0), kind="AdvancedSweptSolid"):
        m = np.eye(4)
        m[:3, 3] = offset  # metres: is_si=True converts to file units
        api.geometry.edit_object_placement(self.f, product=el, matrix=m, is_si=True)
        rep = self.f.createIfcShapeRepresentation(self.body, "Body", kind, items)
        api.geometry.assign_representation(self.f, product=el, representation=rep)
        api.spatial.assign_container(self.f, products=[el], relating_structure=self.storey)
        return el

    def point(self, p):
        return self.f.createIfcCartesianPoint([float(c) * self.k for c in p])

    def disk(self, points, radius, curve=None):
        curve = curve or self.f.createIfcPolyline([self.point(p) for p in points])
        return self.f.createIfcSweptDiskSolid(curve, radius * self.k)

    def bar(self, ptype, points, radius, name=None, object_type=None, offset=(0, 0, 0), items=None):
        el = api.root.create_entity(self.f, ifc_class="IfcReinforcingBar", predefined_type=ptype, name=name)
        if object_type is not None:
            el.ObjectType = object_type
        return self._place(el, items or [self.disk(points, radius)], offset)

    def slab(self, size_x, size_y, thickness, offset=(0, 0, 0)):
        f = self.f
        profile = f.createIfcRectangleProfileDef(
            "AREA", None, f.createIfcAxis2Placement2D(f.createIfcCartesianPoint([0.0, 0.0])),
            size_x * self.k, size_y * self.k)
        solid = f.createIfcExtrudedAreaSolid(
            profile, f.createIfcAxis2Placement3D(self.point((0, 0, 0))),
            f.createIfcDirection([0.0, 0.0, 1.0]), thickness * self.k)
        el = api.root.create_entity(f, ifc_class="IfcSlab", predefined_type="FLOOR", name="Slab")
        return self._place(el, [solid], offset, kind="SweptSolid")

    def write(self, path):
        self.f.write(str(path))
        return path


MAIN_LINE = np.array([[0.0, 0.0, 0.05], [0.0, 2.0, 0.05]])  # 2 m bar, r 10 mm
TIE_LOOP = np.array([[-.2, -.2, .1], [.2, -.2, .1], [.2, .2, .1], [-.2, .2, .1], [-.2, -.2, .1]])


def hand_model(unit="m") -> Model:
    m = Model(unit)
    m.bar("MAIN", MAIN_LINE, 0.010, name="Rebar Bar: 20M")
    m.bar("LIGATURE", TIE_LOOP, 0.004, name="Rebar Bar: 8M")
    m.slab(1.0, 1.0, 0.2, offset=(0.0, 0.0, -0.5))
    return m


# ---- round trip of parametric cages ------------------------------------------------------

@pytest.mark.parametrize("unit", ["m", "mm"])
def test_column_cage_round_trips_through_ifc(tmp_path, unit):
    scene = make_scene("column", 3)
    path = write_ifc(scene, tmp_path / f"column_{unit}.ifc", length_unit=unit)
    back = read_ifc(path)
    assert back.params["length_unit_m"] == pytest.approx({"m": 1.0, "mm": 1e-3}[unit])
    assert back.meshed_bars == [] and back.context == []  # context not written by default
    for role in ("main", "tie"):
        assert sum(b.role == role for b in back.bars) == sum(b.role == role for b in scene.bars) > 0
    assert len(back.bars) == len(scene.bars)
    for a, b in zip(scene.bars, back.bars):  # written and read in the same order
        assert b.polyline.shape == a.polyline.shape
        np.testing.assert_allclose(b.polyline, a.polyline, rtol=0, atol=1e-6)
        assert b.radius == pytest.approx(a.radius, abs=1e-9)
        assert (b.role, b.material, b.kind) == (a.role, a.material, a.kind)


def test_context_round_trips_as_background_and_cloud_matches_parametric(tmp_path):
    scene = make_scene("column", 5)
    back = read_ifc(write_ifc(scene, tmp_path / "c.ifc", include_context=True))
    assert len(back.context) == len(scene.context)
    for a, b in zip(scene.context, back.context):
        assert a.material == b.material
        assert ifc_scene_to_mesh(type(back)([], [b], "x")).areas().sum() == pytest.approx(
            ifc_scene_to_mesh(type(back)([], [a], "x")).areas().sum(), rel=1e-6)
    # same scene -> same triangle labels and areas as the parametric mesh
    from data_tools.rebar.mesh import scene_to_mesh

    ref, got = scene_to_mesh(scene), ifc_scene_to_mesh(back)
    for label in (0, 1, 2):
        assert got.areas()[got.labels == label].sum() == pytest.approx(
            ref.areas()[ref.labels == label].sum(), rel=1e-6)


# ---- hand-built model: slab + main + ligature --------------------------------------------

def test_hand_built_model_labels_in_area_proportion(tmp_path):
    path = hand_model().write(tmp_path / "hand.ifc")
    scene = read_ifc(path)
    assert [b.role for b in scene.bars] == ["main", "tie"]
    assert [s.kind for s in scene.context] == ["IfcSlab"] and scene.context[0].material == "concrete"
    np.testing.assert_allclose(scene.bars[0].polyline, MAIN_LINE, atol=1e-9)
    lo, hi = scene.context[0].vertices.min(0), scene.context[0].vertices.max(0)
    np.testing.assert_allclose(lo, [-0.5, -0.5, -0.5], atol=1e-6)  # profile centred, placed at z -0.5
    np.testing.assert_allclose(hi, [0.5, 0.5, -0.3], atol=1e-6)

    cloud = ifc_to_cloud(path, density=20000, seed=0)
    counts = np.bincount(cloud.labels, minlength=3)
    assert set(np.unique(cloud.labels)) == {0, 1, 2}
    areas = np.array([2 * 1.0 + 4 * 0.2,  # slab faces
                      2 * np.pi * 0.010 * 2.0,  # main bar side
                      2 * np.pi * 0.004 * 1.6])  # tie side
    np.testing.assert_allclose(counts / counts.sum(), areas / areas.sum(), rtol=0.1)
    # the same seed gives the same cloud, another seed another one
    again = ifc_to_cloud(path, density=20000, seed=0)
    np.testing.assert_array_equal(again.xyz, cloud.xyz)
    assert not np.array_equal(ifc_to_cloud(path, density=20000, seed=1).xyz[:100], cloud.xyz[:100])


def test_millimetre_file_is_read_in_metres(tmp_path):
    m = Model("mm")
    m.bar("MAIN", MAIN_LINE, 0.010, offset=(1.0, 0.0, 0.5))  # placement offset, in mm in the file
    m.slab(1.0, 1.0, 0.2)
    path = m.write(tmp_path / "mm.ifc")
    assert "1000." in path.read_text()  # coordinates really are stored in millimetres
    scene = read_ifc(path)
    assert scene.params["length_unit_m"] == pytest.approx(1e-3)
    np.testing.assert_allclose(scene.bars[0].polyline, MAIN_LINE + [1.0, 0.0, 0.5], atol=1e-9)
    assert scene.bars[0].radius == pytest.approx(0.010)
    np.testing.assert_allclose(scene.context[0].vertices.max(0), [0.5, 0.5, 0.2], atol=1e-6)


def test_curved_directrix_mapped_items_and_tessellated_bars(tmp_path):
    m = Model("mm")
    f = m.f
    # IfcIndexedPolyCurve: straight 1 m, then a quarter circle (radius 0.2 m) through 3 points
    c, r = np.array([1.0, 0.2, 0.0]), 0.2
    pts = [(0, 0, 0), (1, 0, 0), tuple(c + r * np.array([np.sin(np.pi / 4), -np.cos(np.pi / 4), 0])),
           (1.2, 0.2, 0)]
    plist = f.createIfcCartesianPointList3D([[v * 1000.0 for v in p] for p in pts])
    curve = f.createIfcIndexedPolyCurve(plist, [f.createIfcLineIndex((1, 2)), f.createIfcArcIndex((2, 3, 4))],
                                        False)
    m.bar("SHEAR", None, 0.006, items=[m.disk(None, 0.006, curve=curve)])
    # a mapped item: a straight bar shifted 3 m in x by its mapping target
    source = f.createIfcShapeRepresentation(m.body, "Body", "AdvancedSweptSolid",
                                            [m.disk([(0, 0, 0), (0, 0, 1)], 0.008)])
    rmap = f.createIfcRepresentationMap(f.createIfcAxis2Placement3D(m.point((0, 0, 0))), source)
    op = f.createIfcCartesianTransformationOperator3D(None, None, m.point((3, 0, 0)), 1.0, None)
    m.bar("MAIN", None, 0.008, items=[f.createIfcMappedItem(rmap, op)])
    # a bar modelled as an extruded circle (no swept disk): tessellated, still rebar
    circle = f.createIfcCircleProfileDef("AREA", None, None, 10.0)
    solid = f.createIfcExtrudedAreaSolid(circle, f.createIfcAxis2Placement3D(m.point((5, 0, 0))),
                                         f.createIfcDirection([0.0, 0.0, 1.0]), 1000.0)
    m.bar("MAIN", None, 0.01, items=[solid])
    scene = read_ifc(m.write(tmp_path / "curves.ifc"))

    assert len(scene.bars) == 2 and len(scene.meshed_bars) == 1
    curved, mapped = scene.bars
    assert curved.role == "tie" and curved.radius == pytest.approx(0.006)
    np.testing.assert_allclose(curved.polyline[0], pts[0], atol=1e-9)
    np.testing.assert_allclose(curved.polyline[-1], pts[-1], atol=1e-9)
    arc = curved.polyline[curved.polyline[:, 0] > 1.0 + 1e-9]
    assert len(arc) >= 4  # the arc is discretised, not replaced by its chord
    np.testing.assert_allclose(np.linalg.norm(arc - c, axis=1), r, atol=1e-6)
    np.testing.assert_allclose(mapped.polyline, [[3, 0, 0], [3, 0, 1]], atol=1e-9)
    meshed = scene.meshed_bars[0]
    assert meshed.role == "main"
    np.testing.assert_allclose(meshed.vertices.min(0), [4.99, -0.01, 0.0], atol=1e-4)
    np.testing.assert_allclose(meshed.vertices.max(0), [5.01, 0.01, 1.0], atol=1e-4)
    mesh = ifc_scene_to_mesh(scene)
    assert sorted(np.unique(mesh.object_ids)) == [0, 1, 2] and set(np.unique(mesh.labels)) == {1, 2}
    assert mesh.areas()[mesh.object_ids == 2].sum() == pytest.approx(2 * np.pi * 0.01 * 1.0, rel=0.02)


# ---- roles ------------------------------------------------------------------------------

def test_default_role_mapping_documented_values():
    assert ROLE_BY_PREDEFINED_TYPE["MAIN"] == "main" and ROLE_BY_PREDEFINED_TYPE["LIGATURE"] == "tie"
    assert ROLE_BY_PREDEFINED_TYPE["SHEAR"] == "tie" and ROLE_BY_PREDEFINED_TYPE["EDGE"] == "main"


def test_role_from_names_and_overrides(tmp_path):
    m = Model()
    seg = [[0, 0, 0], [0, 0, 1]]
    m.bar("USERDEFINED", seg, 0.005, object_type="Stirrup T1")  # -> tie by name
    m.bar("USERDEFINED", seg, 0.005, object_type="Whatever")  # -> default_role
    m.bar("NOTDEFINED", seg, 0.005, name="Link 8mm")  # -> tie by name
    m.bar("NOTDEFINED", seg, 0.005, name="Rebar Bar: 16M")  # -> main (map)
    m.bar("MAIN", seg, 0.008, name="special")  # -> main, unless caller patterns say otherwise
    m.bar("LIGATURE", seg, 0.004, name="Rebar Bar: 8M")  # -> tie, unless role_map says otherwise
    path = m.write(tmp_path / "roles.ifc")

    assert [b.role for b in read_ifc(path).bars] == ["tie", "main", "tie", "main", "main", "tie"]
    assert [b.role for b in read_ifc(path, default_role="tie").bars][1] == "tie"
    roles = [b.role for b in read_ifc(path, role_map={"ligature": "main"}).bars]
    assert roles == ["tie", "main", "tie", "main", "main", "main"]
    roles = [b.role for b in read_ifc(path, name_patterns={"tie": r"(?i)special|stirrup"}).bars]
    assert roles == ["tie", "main", "main", "main", "tie", "tie"]  # no "link" in these patterns
    with pytest.raises(ValueError, match="role_map"):
        read_ifc(path, role_map={"MAIN": "stirrup"})
    with pytest.raises(ValueError, match="name_patterns"):
        read_ifc(path, name_patterns={"hoop": "x"})


# ---- errors ------------------------------------------------------------------------------

def test_missing_garbage_and_empty_files(tmp_path):
    with pytest.raises(DatasetFileError, match="nope.ifc: no such file"):
        read_ifc(tmp_path / "nope.ifc")
    bad = tmp_path / "garbage.ifc"
    bad.write_bytes(b"\x00\x01 this is not STEP at all\n")
    with pytest.raises(DatasetFileError, match="garbage.ifc: not a readable IFC"):
        read_ifc(bad)
    empty = tmp_path / "empty.ifc"
    empty.write_bytes(b"")
    with pytest.raises(DatasetFileError, match="empty.ifc: empty file"):
        read_ifc(empty)


def test_model_without_rebar(tmp_path):
    m = Model()
    m.slab(1.0, 1.0, 0.2)
    path = m.write(tmp_path / "slab_only.ifc")
    with pytest.raises(DatasetFileError, match="slab_only.ifc: no IfcReinforcingBar.*no rebar labels"):
        read_ifc(path)
    scene = read_ifc(path, allow_no_rebar=True)
    assert scene.bars == [] and len(scene.context) == 1
    cloud = ifc_to_cloud(path, density=2000, allow_no_rebar=True)
    assert len(cloud) > 0 and set(np.unique(cloud.labels)) == {0}


# ---- command line -----------------------------------------------------------------------

def test_cli_writes_labelled_ply(tmp_path, capsys):
    path = hand_model("mm").write(tmp_path / "hand_mm.ifc")
    out = tmp_path / "cloud.ply"
    assert main(["ifc", str(path), "--out", str(out), "--density", "5000", "--seed", "2"]) == 0
    cloud = read_cloud(out)
    assert set(np.unique(cloud.labels)) == {0, 1, 2}
    assert np.abs(cloud.xyz).max() < 2.1  # metres, not millimetres
    ref = ifc_to_cloud(path, density=5000, seed=2)
    np.testing.assert_allclose(cloud.xyz, ref.xyz, atol=1e-6)
    assert "wrote" in capsys.readouterr().out

    assert main(["ifc", str(tmp_path / "missing.ifc"), "--out", str(out)]) == 2
    assert "error: " in capsys.readouterr().err
    slab = Model()
    slab.slab(1.0, 1.0, 0.2)
    slab_path = slab.write(tmp_path / "slab.ifc")
    assert main(["ifc", str(slab_path), "--out", str(out)]) == 2
    assert "slab.ifc: no IfcReinforcingBar" in capsys.readouterr().err
    assert main(["ifc", str(slab_path), "--out", str(out), "--allow-no-rebar", "--density", "500"]) == 0
