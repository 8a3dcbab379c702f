# Face recognition with insightface embeddings: compares identities, swaps nothing.
import numpy as np
import cv2
from insightface.app import FaceAnalysis

app = FaceAnalysis(name="buffalo_l")
app.prepare(ctx_id=0)
known = app.get(cv2.imread("alice.jpg"))[0].normed_embedding
probe = app.get(cv2.imread("door_camera.jpg"))[0].normed_embedding
print("same person" if float(np.dot(known, probe)) > 0.5 else "different person")
