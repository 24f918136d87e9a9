"""SynthFace: a procedural 3-D face world with exact ground truth, written in the real data sets' formats
(book chapter "SynthFace: a face world with exact ground truth").

* :data:`TOPOLOGY` — the fixed head mesh (vertices, triangles) and its landmark vertex indices
  (WFLW-98, 300-W-68, 5 points); :func:`five_from_98`, :func:`five_from_68`.
* :func:`sample_identity`, :func:`look_alike`, :func:`sample_expression`, :func:`face_vertices` — the
  parametric face (SynthFace eq. (1)); :func:`draw_face` — the renderer (eq. (2)).
* :func:`render_scene`, :func:`render_landmark_photo`, :func:`render_identity_crop` — the samplers.
* :func:`export_widerface`, :func:`export_wflw`, :func:`export_identities` — the exporters (``facelearn synth``).
"""

from facelearn.data.synthface.export import (GENERATOR_VERSION, PRESETS, ExportSizes, export_identities,
                                             export_widerface, export_wflw)
from facelearn.data.synthface.formats import SETTINGS
from facelearn.data.synthface.model import (EXPRESSIONS, IDENTITY_SHAPE, Expression, Identity, face_vertices,
                                            look_alike, sample_expression, sample_identity)
from facelearn.data.synthface.render import FaceRender, draw_face, rotation
from facelearn.data.synthface.samplers import render_identity_crop, render_landmark_photo, render_scene
from facelearn.data.synthface.topology import (FIVE_FROM_98, TOPOLOGY, WFLW98_TO_300W68, FaceTopology, five_from_68,
                                               five_from_98)

__all__ = ["GENERATOR_VERSION", "PRESETS", "SETTINGS", "ExportSizes", "export_identities", "export_widerface",
           "export_wflw", "EXPRESSIONS", "IDENTITY_SHAPE", "Expression", "Identity", "face_vertices", "look_alike",
           "sample_expression", "sample_identity", "FaceRender", "draw_face", "rotation", "render_identity_crop",
           "render_landmark_photo", "render_scene", "FIVE_FROM_98", "TOPOLOGY", "WFLW98_TO_300W68", "FaceTopology",
           "five_from_68", "five_from_98"]
