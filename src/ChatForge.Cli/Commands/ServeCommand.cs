using System.CommandLine;
using ChatForge.Cli.Serve;

namespace ChatForge.Cli.Commands;

public static class ServeCommand
{
    public static Command Create(Ui ui)
    {
        var model = new Option<List<string>>("--model")
        {
            Description = "a chat model to serve: DIR (named after the directory) or NAME=DIR; repeatable",
            HelpName = "[NAME=]DIR", AllowMultipleArgumentsPerToken = false, Arity = ArgumentArity.ZeroOrMore,
        };
        var pipeline = Opt.Text("--pipeline", "serve every stage's model of a pipeline run under its stage name (base, sft, ppo, dpo, …) and its reward model", "RUN_DIR");
        var host = Opt.Text("--host", "the address to listen on (default 127.0.0.1: this machine only)", "ADDR");
        var port = Opt.Int("--port", "the port (default 8000; 0: any free port)", "PORT");
        var apiKey = Opt.Text("--api-key", "require 'Authorization: Bearer KEY' on every /v1 route", "KEY");
        var maxBatch = Opt.Int("--max-batch", "requests to one model decoded together (default 8)");
        var queue = Opt.Int("--queue", "requests a model may hold, waiting or running, before answering 503 (default 64)");
        var maxBody = Opt.Int("--max-body-bytes", "the largest request body (default 1048576; larger: 413)", "BYTES");
        var device = Opt.Device();
        var verb = new Command("serve", "an OpenAI-compatible chat server (POST /v1/chat/completions, GET /v1/models, GET /health)")
            { model, pipeline, host, port, apiKey, maxBatch, queue, maxBody, device };
        verb.SetAction(r =>
        {
            var models = new Dictionary<string, string>();
            foreach (var m in r.GetValue(model) ?? new())
            {
                int eq = m.IndexOf('=');
                var (name, dir) = eq > 0 ? (m[..eq], m[(eq + 1)..]) : (Path.GetFileName(Path.GetFullPath(m).TrimEnd('/')), m);
                if (models.ContainsKey(name)) throw new ChatForgeException($"--model: two models are named '{name}'; name them with NAME=DIR");
                models[name] = dir;
            }
            var o = new ServeOptions
            {
                Models = models, Pipeline = r.GetValue(pipeline), Host = r.GetValue(host) ?? "127.0.0.1", Port = r.GetValue(port) ?? 8000,
                ApiKey = r.GetValue(apiKey), MaxBatch = r.GetValue(maxBatch) ?? 8, QueueCapacity = r.GetValue(queue) ?? 64,
                MaxBodyBytes = r.GetValue(maxBody) ?? 1 << 20, Device = r.GetValue(device) ?? "auto",
            };
            if (o.MaxBodyBytes < 1) throw new ChatForgeException($"--max-body-bytes must be ≥ 1, got {o.MaxBodyBytes}");
            ChatServer server;
            try { server = ChatServer.StartAsync(o, ui.Log).GetAwaiter().GetResult(); }
            catch (IOException e) { throw new ChatForgeException($"cannot listen on {o.Host}:{o.Port}: {e.Message}"); }
            ui.Log($"serving {string.Join(", ", server.Models.Keys)} at {server.BaseUrl}/v1 (Ctrl+C stops)");
            server.WaitForShutdownAsync().GetAwaiter().GetResult();
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return 0;
        });
        return verb;
    }
}
