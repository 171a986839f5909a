"""Detection: torchvision detectors over ReXNet backbones, COCO data and metrics."""
