#!/bin/sh
# A chat turn over HTTP with curl, against `ncas serve` (default http://127.0.0.1:8080).
url=${NCAS_URL:-http://127.0.0.1:8080}
curl -sS "$url/v1/chat/completions" \
  -H 'Content-Type: application/json' \
  -d '{
        "messages": [
          {"role": "system", "content": "A short story."},
          {"role": "user", "content": "Tell me about the river."}
        ],
        "max_tokens": 32,
        "temperature": 0
      }'
