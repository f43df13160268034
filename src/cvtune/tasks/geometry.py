"""Quadrilateral helpers for text boxes: point order, clipping, perspective crops (as PaddleOCR/rapidocr do)."""

from __future__ import annotations

import cv2
import numpy as np


def order_points_clockwise(points: np.ndarray) -> np.ndarray:
    """4 points -> [top-left, top-right, bottom-right, bottom-left] (sorted by x, then by y on each side)."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def min_area_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle around a contour as 4 ordered points, and its shorter side."""
    rect = cv2.minAreaRect(np.asarray(contour, dtype=np.float32).reshape(-1, 1, 2))
    points = order_points_clockwise(cv2.boxPoints(rect))
    return points, float(min(rect[1]))


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-rectify the region inside an ordered quad (tl, tr, br, bl); crops at least 1.5x taller than
    wide are rotated 90 degrees so vertical lines read left to right (PaddleOCR's get_rotate_crop_image)."""
    quad = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop
