import zipfile
archive = zipfile.ZipFile("secret.zip")
with open("passwords.txt", encoding="latin-1") as candidates:
    for word in candidates:
        try:
            archive.extractall(pwd=word.strip().encode())
            print("found", word)
            break
        except RuntimeError:
            pass
