"""Indices into MediaPipe's 478-point face mesh (468 mesh points + 10 iris points), named by
image side: "left" is the eye/brow on the image's left for an upright face (the subject's right).

Shared by perception (measuring parameters) and the mesh renderer (moving the same points).
"""
from __future__ import annotations

NUM_LANDMARKS = 478

FOREHEAD = 10
CHIN = 152
NOSE_TIP = 1
NOSE_BRIDGE = 168          # between the eyes
FACE_LEFT_EDGE, FACE_RIGHT_EDGE = 234, 454   # face outline at eye height

# Eyes: outer and inner corner, upper lid and lower lid contours (paired column by column,
# from the outer corner to the inner one), iris centre and iris ring.
LEFT_EYE_OUTER, LEFT_EYE_INNER = 33, 133
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 263, 362
LEFT_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)
LEFT_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
RIGHT_UPPER_LID = (466, 388, 387, 386, 385, 384, 398)
RIGHT_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
LEFT_IRIS = (468, 469, 470, 471, 472)     # centre first
RIGHT_IRIS = (473, 474, 475, 476, 477)

# Brows (upper and lower edge, outer to inner).
LEFT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
RIGHT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)

# Lips: corners, then contours from the left corner to the right corner.
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
INNER_MOUTH_LEFT, INNER_MOUTH_RIGHT = 78, 308
UPPER_LIP_TOP, UPPER_LIP_INNER = 0, 13
LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 14, 17
UPPER_OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)

# Face outline, clockwise in the image starting at the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109)
