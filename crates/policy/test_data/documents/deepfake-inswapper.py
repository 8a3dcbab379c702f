import cv2
import insightface
from insightface.app import FaceAnalysis

app = FaceAnalysis(name="buffalo_l")
app.prepare(ctx_id=0, det_size=(640, 640))
model = insightface.model_zoo.get_model("models/" + "insw" + "apper_128.onnx")
source = app.get(cv2.imread("person.jpg"))[0]
frame = cv2.imread("frame.jpg")
for face in app.get(frame):
    frame = model.get(frame, face, source, paste_back=True)
cv2.imwrite("out.jpg", frame)
