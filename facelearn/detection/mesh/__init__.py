"""RetinaFace's self-supervised dense regression branch (book chapter "The dense regression branch").

* :mod:`~facelearn.detection.mesh.graph` — the SynthFace mesh as a graph: adjacency, normalised Laplacian,
  its rescaling for Chebyshev polynomials, k-ring neighbourhoods;
* :mod:`~facelearn.detection.mesh.chebconv` — Chebyshev spectral graph convolution (Defferrard et al. 2016);
* :mod:`~facelearn.detection.mesh.decoder` — the mesh auto-encoder whose decoder turns a 128-d shape and
  texture code into a coloured mesh, and its pre-training on SynthFace's true meshes;
* :mod:`~facelearn.detection.mesh.render` — a differentiable soft rasteriser with a 7-parameter camera and
  9-parameter light;
* :mod:`~facelearn.detection.mesh.branch` — the pixel loss of the fourth task head.
"""
