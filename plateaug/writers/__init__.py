"""Writing datasets to disk: YOLO / COCO / OCR writers, crash-safe atomic files, contact sheets."""
