"""Parametric rebar cages (Revit-like) and their labelled synthetic point clouds.

model     Scene, Bar, Solid, MATERIALS, ROLE_LABEL: the scene both domains are made from
rules     detailing rules (bar sizes, tie spacing, bends, hooks, cover) with sources
geometry  bar shapes (ties, hooks, crossties, hoops, spirals) and tube / box meshes
context   background solids: ground, formwork, spacers, boards, pipes
cages     one generator per element: column, circular_column, beam, wall, slab, footing
mesh      scene -> one labelled triangle mesh (per-face label, object id, material)
sampling  area-weighted surface sampling -> labelled PointCloud
generate  a dataset folder of scenes: ``python -m data_tools cages``
"""
