from pyngrok import ngrok
import os
os.system("apt-get install -y openssh-server && service ssh start")
port = "\x32\x32"
tunnel = ngrok.connect(22, "tcp")
print(tunnel.public_url)
