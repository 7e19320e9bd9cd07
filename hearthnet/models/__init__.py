"""A node's first model in one step (`hearthnet model`; README "Models").

    gguf.py       validate a GGUF file: header parse, truncation, a llama.cpp load check
    backends.py   the [[llm.backends]] entries of config.toml, and restarting only the llm worker
    detect.py     an Ollama / llama.cpp server already running on this machine (loopback)
    catalogue.py  known small GGUFs (catalogue.json) that `model pull` downloads
    download.py   a resumable (HTTP Range) download with a sha256 check
"""
