#!/usr/bin/env bash
# test_server_openai.sh SERVER MODEL_DIR SCRATCH: the official `openai` npm package against
# `specreason-server` on a free loopback port: one non-streaming and one streaming chat completion,
# reading reasoning_content (the thinking) and content; the streamed deltas must add up to the
# non-streaming message (greedy). Installs openai into SCRATCH from the npm registry on first use.
set -u
server=$1; dir=$2; scratch=$3
command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm not installed"; exit 77; }
mkdir -p "$scratch"
if [ ! -d "$scratch/node_modules/openai" ]; then
    (cd "$scratch" && npm install --no-audit --no-fund --silent openai) || { echo "FAIL: npm install openai"; exit 1; }
fi
log=$scratch/server.log
# policy always: streamed and non-streamed runs must give the same text (auto decides by time)
"$server" --small "$dir/small-b.gguf" --base "$dir/base-b.gguf" --port 0 --threads 1 --ctx 2048 --budget 48 \
    --max-step-tokens 16 --max-answer-tokens 8 --greedy --policy always --api-key test-key 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
port=
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*ready on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: server did not start"; cat "$log"; exit 1; }
cat > "$scratch/client.mjs" <<'JS'
import OpenAI from "openai";
const client = new OpenAI({ baseURL: `http://127.0.0.1:${process.argv[2]}/v1`, apiKey: "test-key" });
const messages = [{ role: "user", content: "What is 2+3?" }];
const models = await client.models.list();
if (models.data[0].id !== "specreason") throw new Error("models: " + JSON.stringify(models.data));
const r = await client.chat.completions.create({ model: "specreason", messages, max_tokens: 48 });
const m = r.choices[0].message;
if (typeof m.reasoning_content !== "string" || m.reasoning_content.length === 0) throw new Error("no reasoning_content");
if (typeof m.content !== "string") throw new Error("no content");
if (r.usage.completion_tokens_details.reasoning_tokens <= 0) throw new Error("no reasoning tokens");
const stream = await client.chat.completions.create({ model: "specreason", messages, max_tokens: 48, stream: true,
                                                      stream_options: { include_usage: true } });
let reasoning = "", content = "", usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  const d = chunk.choices[0]?.delta;
  if (d?.reasoning_content) reasoning += d.reasoning_content;
  if (d?.content) content += d.content;
}
if (reasoning !== m.reasoning_content) throw new Error("streamed reasoning differs:\n" + reasoning + "\n---\n" + m.reasoning_content);
if (content !== m.content) throw new Error("streamed content differs");
if (!usage || usage.total_tokens !== r.usage.total_tokens) throw new Error("usage chunk: " + JSON.stringify(usage));
let refused = false;
try { await new OpenAI({ baseURL: client.baseURL, apiKey: "wrong" }).chat.completions.create({ model: "specreason", messages }); }
catch (e) { refused = e.status === 401; }
if (!refused) throw new Error("wrong key not refused with 401");
console.log(`ok: ${chunks} chunks, ${reasoning.length} reasoning chars, usage ${JSON.stringify(usage)}`);
JS
(cd "$scratch" && timeout 600 node client.mjs "$port"); rc=$?
kill -TERM $pid; wait $pid; src=$?
trap - EXIT
[ $src = 0 ] || { echo "FAIL: server exit $src"; tail -20 "$log"; rc=1; }
exit $rc
