# The embedding example in Python (docs/embedding.md): the demo model continues a
# prompt, greedy, and the text is printed piece by piece as it comes.
import sys

import ncas

model = ncas.Model(sys.argv[1] if len(sys.argv) > 1 else "models/demo-q8_0.gguf")
session = model.session(n_ctx=256)
gen = session.generate("Once upon a time", max_tokens=24, temperature=0)
for piece in gen:
    print(piece, end="", flush=True)
print(f"\n[{gen.finish} after {gen.usage['completion_tokens']} tokens]")
