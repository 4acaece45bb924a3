namespace ChatForge.Cli.Serve;

/// <summary>
/// GET /: a chat page. Pick one model, or every model at once (a pipeline's stages: base, SFT, PPO, DPO, …) to see them
/// answer the same prompt side by side, each answer streamed from /v1/chat/completions and, when the server has a reward
/// model, scored by it (/v1/score). Plain HTML and JavaScript, no external files.
/// </summary>
public static class ChatPage
{
    public const string Html = """
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ChatForge</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  p.lead { margin: 0 0 1rem; color: #555; }
  form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: flex-start; }
  textarea { flex: 1 1 30rem; min-height: 3.5rem; font: inherit; padding: .4rem; }
  select, input, button { font: inherit; padding: .4rem; }
  #answers { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: .8rem; margin-top: 1rem; }
  .answer { border: 1px solid #ccc; border-radius: .4rem; padding: .6rem; }
  .answer h2 { font-size: 1rem; margin: 0 0 .4rem; display: flex; justify-content: space-between; }
  .answer .text { white-space: pre-wrap; min-height: 1.5rem; }
  .answer .reward { font-weight: normal; color: #555; font-size: .9rem; }
  .answer.done { border-color: #6a6; }
  .answer.error { border-color: #c44; }
  #status { color: #555; margin-top: .5rem; }
</style>
</head>
<body>
<h1>ChatForge</h1>
<p class="lead">Ask one model, or every stage of a pipeline at once and compare their answers side by side.</p>
<form id="ask">
  <textarea id="prompt" placeholder="Ask something, e.g. How do I kill a stuck process?"></textarea>
  <div>
    <select id="model" aria-label="model"></select>
    <input id="temperature" type="number" min="0" max="2" step="0.1" value="0" aria-label="temperature" title="temperature" style="width:5rem">
    <input id="key" type="password" placeholder="API key (if the server has one)" aria-label="API key">
    <button id="send" type="submit">Send</button>
  </div>
</form>
<div id="status"></div>
<div id="answers"></div>
<script>
const ALL = "__all__";
const $ = id => document.getElementById(id);
let rewardModel = false;

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

async function loadModels() {
  const health = await (await fetch("/health")).json();
  rewardModel = health.reward_model;
  const select = $("model");
  select.innerHTML = "";
  if (health.models.length > 1) select.add(new Option("every model, side by side", ALL));
  for (const m of health.models) select.add(new Option(m, m));
  $("status").textContent = health.models.length + " model(s)" + (rewardModel ? ", answers scored by the reward model" : "");
}

function column(model) {
  const div = document.createElement("div");
  div.className = "answer";
  div.dataset.model = model;
  div.innerHTML = "<h2><span class=\"name\"></span><span class=\"reward\"></span></h2><div class=\"text\"></div>";
  div.querySelector(".name").textContent = model;
  $("answers").appendChild(div);
  return div;
}

async function answer(model, prompt, div) {
  const text = div.querySelector(".text");
  const body = { model, messages: [{ role: "user", content: prompt }], stream: true, temperature: Number($("temperature").value), max_tokens: 64 };
  const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: { message: r.statusText } }));
    throw new Error(e.error.message);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, at).trim();
      buffer = buffer.slice(at + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      for (const c of chunk.choices) if (c.delta && c.delta.content) {
        text.textContent += c.delta.content;
        div.dataset.chunks = Number(div.dataset.chunks || 0) + 1;   // streamed pieces received so far
      }
    }
  }
  if (rewardModel) {
    const s = await fetch("/v1/score", { method: "POST", headers: headers(), body: JSON.stringify({ messages: body.messages, response: text.textContent }) });
    if (s.ok) div.querySelector(".reward").textContent = "reward " + (await s.json()).score.toFixed(3);
  }
}

$("ask").addEventListener("submit", async ev => {
  ev.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) return;
  const chosen = $("model").value;
  const models = chosen === ALL ? [...$("model").options].map(o => o.value).filter(v => v !== ALL) : [chosen];
  $("answers").innerHTML = "";
  $("send").disabled = true;
  $("status").textContent = "answering…";
  await Promise.all(models.map(async m => {
    const div = column(m);
    try { await answer(m, prompt, div); div.classList.add("done"); }
    catch (e) { div.classList.add("error"); div.querySelector(".text").textContent = "error: " + e.message; }
  }));
  $("send").disabled = false;
  $("status").textContent = "done";
});

loadModels().catch(e => { $("status").textContent = "cannot reach the server: " + e.message; });
</script>
</body>
</html>
""";
}
