# Sourced by the GPU scripts on a lent GPU machine: installs the wheels of scripts/device_wheels.sh
# (carried as .whl/) into /tmp/site and puts `python` and `actormimic` commands that use them on PATH.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    mkdir -p /tmp/bin
    printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/bin/python
    printf '#!/bin/sh\nexec python3 -m actormimic "$@"\n' > /tmp/bin/actormimic
    chmod +x /tmp/bin/python /tmp/bin/actormimic
    export PATH="/tmp/bin:$PATH"
fi
