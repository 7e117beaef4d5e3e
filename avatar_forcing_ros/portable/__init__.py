"""The portable default backend: no download, real time on a 2-core CPU, ROS-free.

motion_space (the face-parameter latent space), perception (MediaPipe: camera frame ->
parameters), behaviour (PortableBackend: rule-based reactive motion), mesh_renderer
(PortableRenderer: a portrait photograph animated by a landmark mesh warp).
"""
