using System.Text.Json;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Serving;
using ChatForge.Tests.Support;
using ChatForge.Tests.Tokenization;
using ChatForge.Tokenization;
using AI = Microsoft.Extensions.AI;
using ChatMessage = ChatForge.Tokenization.ChatMessage;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Cli;

/// <summary>
/// README's walkthrough on directories shaped like the real ones: a Llama-family config.json and weights with the
/// checkpoint's own tokenizer.json and chat template (SmolLM2's ChatML with its default system message, Llama 3.2's
/// headers): LoRA-tune on chat JSONL, align with DPO, serve; the tokenizer and the template travel with every checkpoint.
/// </summary>
public class HfDirectoryTests : IClassFixture<HfTokenizerFixture>
{
    readonly HfTokenizerFixture _f;
    public HfDirectoryTests(HfTokenizerFixture f) => _f = f;

    static void Ok((int Code, string Out, string Err) r, string verb) => Assert.True(r.Code == 0, $"{verb}: {r.Err}");

    /// <summary>A random Llama over the tokenizer in <paramref name="tokenizerDir"/>, written as a Hugging Face model directory.</summary>
    static string Checkpoint(string tokenizerDir, string dir, bool tied)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(tokenizerDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var tok = TokenizerFiles.Load(dir);
        manual_seed(3);
        using var m = new Llama(TinyBase.LlamaConfig() with { VocabSize = tok.VocabSize + 5, TieWordEmbeddings = tied });
        HfCheckpoint.Write(dir, m, tokenizer: null);
        return dir;
    }

    [Theory]
    [InlineData("smol", "<|im_end|>")]
    [InlineData("llama", "<|eot_id|>")]
    public async Task A_llama_directory_with_its_own_tokenizer_lora_tunes_aligns_with_dpo_and_serves(string which, string endOfTurn)
    {
        using var d = new TempDir();
        var baseDir = Checkpoint(which == "smol" ? _f.Smol : _f.Llama, d["base"], tied: which == "smol");
        var tok = TokenizerFiles.Load(baseDir);
        Assert.Equal("hf", tok.Kind);
        Assert.Equal(endOfTurn, tok.ChatFormat.EndOfTurn);

        // The loss mask follows the template: only the assistant's content and its end-of-turn token are trained on.
        var example = SftExample.Chat(new ChatMessage("user", "What is the capital of Ohio?"), new ChatMessage("assistant", "Columbus."));
        var enc = SftData.Encode(tok, example, 256);
        Assert.Equal("Columbus." + endOfTurn, tok.Decode(enc.Ids.Where((_, i) => enc.Train[i])));
        Assert.Equal(ChatTemplate.Render(tok.ChatFormat, example.Messages!, addGenerationPrompt: false), tok.Decode(enc.Ids));

        var examples = FakeCorpora.States.Select(s => SftExample.Chat(new ChatMessage("user", $"What is the capital of {s.Item1}?"),
                                                                      new ChatMessage("assistant", $"The capital of {s.Item1} is {s.Item2}."))).ToList();
        SftData.Write(d["sft.jsonl"], examples);
        Ok(CliRunner.Run("sft", "--preset", "tiny", "--model", baseDir, "--data", d["sft.jsonl"], "--lora", "--out", d["sft"], "--max-steps", "3"), "sft");
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors" })
            Assert.True(File.Exists(d["sft/model/" + f]), f);
        Assert.Equal(JsonDocument.Parse(File.ReadAllText(Path.Combine(baseDir, "tokenizer_config.json"))).RootElement.GetProperty("chat_template").GetString(),
                     JsonDocument.Parse(File.ReadAllText(d["sft/model/tokenizer_config.json"])).RootElement.GetProperty("chat_template").GetString());

        var pairs = FakeCorpora.States.Select(s => new PreferencePair(new ChatPrompt($"Capital of {s.Item1}?"), true, $"{s.Item2}.", "I don't know.")).ToList();
        Preferences.WritePairs(d["pairs.jsonl"], pairs);
        Ok(CliRunner.Run("dpo", "--preset", "tiny", "--sft", d["sft/model"], "--data", d["pairs.jsonl"], "--out", d["dpo"], "--max-steps", "2"), "dpo");
        Assert.Equal("llama", JsonDocument.Parse(File.ReadAllText(d["dpo/model/config.json"])).RootElement.GetProperty("model_type").GetString());

        // Served: the prompt is the template's rendering of the conversation (its default system message included).
        using var client = ChatForgeChatClient.Load(d["dpo/model"], "tuned");
        var conversation = new List<AI.ChatMessage> { new(AI.ChatRole.User, "Capital of Ohio?") };
        var response = await client.GetResponseAsync(conversation, new AI.ChatOptions { Temperature = 0, MaxOutputTokens = 5 });
        var served = TokenizerFiles.Load(d["dpo/model"]);
        int expected = ChatTemplate.Encode(served, new[] { new ChatMessage("user", "Capital of Ohio?") }, addGenerationPrompt: true).Ids.Length;
        Assert.Equal(expected, response.Usage!.InputTokenCount);
        if (which == "smol") Assert.Contains("You are a helpful AI assistant named SmolLM", ChatTemplate.Render(served.ChatFormat, new[] { new ChatMessage("user", "x") }, true));
    }
}
