import base64, subprocess
repo = base64.b64decode("aHR0cHM6Ly9naXRodWIuY29tL0FVVE9NQVRJQzExMTEvc3RhYmxlLWRpZmZ1c2lvbi13ZWJ1aQ==").decode()
subprocess.run(["git", "clone", repo, "ui"])
subprocess.run(["python", "ui/launch.py", "--listen"])
