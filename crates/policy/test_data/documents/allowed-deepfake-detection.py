import torch
from torchvision import models
# Deepfake detection on FaceForensics++ crops.
classes = ["real", "Deepfakes", "FaceSwap", "Face2Face", "NeuralTextures"]
detector = models.efficientnet_b0(num_classes=len(classes))
def detect_deepfake(batch):
    return detector(batch).softmax(-1)
