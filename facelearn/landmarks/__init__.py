"""PFLD landmark detection (book: chapter "PFLD: practical facial landmark detection").

* :mod:`~facelearn.landmarks.pfld` — the network (MobileNetV2 blocks, S1/S2/S3 fusion) and the auxiliary net;
* :mod:`~facelearn.landmarks.loss` — the pose- and attribute-weighted loss (PFLD eq. 2);
* :mod:`~facelearn.landmarks.euler` — yaw, pitch, roll from landmarks with solvePnP;
* :mod:`~facelearn.landmarks.metrics` — NME, failure rate, AUC, CED;
* :mod:`~facelearn.landmarks.crops` — training and test crops with augmentation;
* :mod:`~facelearn.landmarks.recipe` — the ``quick``/``full`` recipes, training, evaluation, checkpoints;
* :mod:`~facelearn.landmarks.commands` — ``facelearn train pfld`` and ``facelearn eval landmarks``.
"""
