using System.Text.Json.Nodes;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;

namespace ChatForge.Tests.Tokenization;

/// <summary>What HfTokenizer cannot honour is a one-line error naming the file and the key.</summary>
public class HfTokenizerErrorTests : IClassFixture<HfTokenizerFixture>
{
    readonly HfTokenizerFixture _f;
    public HfTokenizerErrorTests(HfTokenizerFixture f) => _f = f;

    /// <summary>A copy of the Llama-shaped directory with one edit to tokenizer.json (or tokenizer_config.json); the load error.</summary>
    string LoadError(Action<JsonObject> editTokenizer, Action<JsonObject>? editConfig = null, string? source = null)
    {
        using var d = new TempDir();
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            var o = JsonNode.Parse(File.ReadAllText(Path.Combine(source ?? _f.Llama, name)))!.AsObject();
            if (name == "tokenizer.json") editTokenizer(o); else editConfig?.Invoke(o);
            File.WriteAllText(d[name], o.ToJsonString());
        }
        var e = Assert.Throws<ChatForgeException>(() => TokenizerFiles.Load(d.Path));
        Assert.DoesNotContain("\n", e.Message);
        return e.Message;
    }

    static JsonObject Pre(JsonObject o, int i) => o["pre_tokenizer"]!["pretokenizers"]![i]!.AsObject();

    [Fact]
    public void An_unsupported_pre_tokenizer_is_named_by_its_key_path() =>
        Assert.StartsWith("tokenizer.json: 'pre_tokenizer.pretokenizers[0].type' = 'Metaspace' is not supported",
            LoadError(o => Pre(o, 0)["type"] = "Metaspace"));

    [Fact]
    public void A_prefix_space_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'pre_tokenizer.pretokenizers[1].add_prefix_space' = 'true' is not supported",
            LoadError(o => Pre(o, 1)["add_prefix_space"] = true));

    [Fact]
    public void A_split_that_is_not_isolated_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'pre_tokenizer.pretokenizers[0].behavior' = 'Removed' is not supported",
            LoadError(o => Pre(o, 0)["behavior"] = "Removed"));

    [Fact]
    public void A_pre_tokenizer_without_byte_level_is_refused() =>
        Assert.Contains("'pre_tokenizer.pretokenizers[0]' the last pre-tokenizer must be ByteLevel",
            LoadError(o => o["pre_tokenizer"]!["pretokenizers"]!.AsArray().RemoveAt(1)));

    [Fact]
    public void A_regex_dotnet_cannot_read_is_named() =>
        Assert.StartsWith("tokenizer.json: 'pre_tokenizer.pretokenizers[0].pattern.Regex' is not a pattern .NET can read",
            LoadError(o => Pre(o, 0)["pattern"] = new JsonObject { ["Regex"] = "(?<x" }));

    [Fact]
    public void A_model_that_is_not_bpe_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'model.type' = 'Unigram' is not supported", LoadError(o => o["model"]!["type"] = "Unigram"));

    [Fact]
    public void A_normalizer_other_than_nfc_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'normalizer.type' = 'Lowercase' is not supported",
            LoadError(o => o["normalizer"] = new JsonObject { ["type"] = "Lowercase" }));

    [Fact]
    public void A_decoder_other_than_byte_level_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'decoder.type' = 'Metaspace' is not supported", LoadError(o => o["decoder"]!["type"] = "Metaspace"));

    [Fact]
    public void A_post_processor_that_appends_tokens_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'post_processor.processors[1].single[2]' = ",
            LoadError(o => o["post_processor"]!["processors"]![1]!["single"]!.AsArray()
                .Add(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|eot_id|>", ["type_id"] = 0 } })));

    [Fact]
    public void A_roberta_post_processor_is_refused() =>
        Assert.StartsWith("tokenizer.json: 'post_processor.type' = 'RobertaProcessing' is not supported",
            LoadError(o => o["post_processor"] = new JsonObject { ["type"] = "RobertaProcessing" }));

    [Fact]
    public void Byte_fallback_and_stripping_added_tokens_are_refused()
    {
        Assert.StartsWith("tokenizer.json: 'model.byte_fallback' = 'true' is not supported", LoadError(o => o["model"]!["byte_fallback"] = true));
        Assert.StartsWith("tokenizer.json: 'added_tokens[3].lstrip' = 'true' is not supported", LoadError(o => o["added_tokens"]![3]!["lstrip"] = true));
    }

    [Fact]
    public void Malformed_merges_and_missing_keys_are_named()
    {
        Assert.StartsWith("tokenizer.json: 'model.merges[0]' must be a pair", LoadError(o => o["model"]!["merges"]![0] = new JsonArray("a", "b", "c")));
        Assert.StartsWith("tokenizer.json: 'model.merges[1]' = 'a b c' must be two tokens",
            LoadError(o => o["model"]!["merges"]![1] = "a b c", source: _f.Qwen));
        Assert.StartsWith("tokenizer.json: 'model.merges' do not fit 'model.vocab'",
            LoadError(o => o["model"]!["merges"]!.AsArray().Add(new JsonArray("Ġwh", "zzz"))));
        Assert.Equal("tokenizer.json: 'model.vocab' is missing", LoadError(o => o["model"]!.AsObject().Remove("vocab")));
        Assert.Equal("tokenizer.json: 'model' is missing", LoadError(o => o.Remove("model")));
        Assert.Equal("tokenizer.json: 'model.vocab['Ġ']' must be an integer id", LoadError(o => o["model"]!["vocab"]!["Ġ"] = "x"));
    }

    [Fact]
    public void Invalid_json_is_named()
    {
        using var d = new TempDir();
        File.WriteAllText(d["tokenizer.json"], "{ not json");
        var e = Assert.Throws<ChatForgeException>(() => TokenizerFiles.Load(d.Path));
        Assert.StartsWith("tokenizer.json: not valid JSON", e.Message);
    }

    [Fact]
    public void Config_errors_name_tokenizer_config_json()
    {
        Assert.Equal("tokenizer_config.json: 'eos_token' = '<|nope|>' is not a special token of tokenizer.json",
            LoadError(_ => { }, c => c["eos_token"] = "<|nope|>"));
        Assert.Equal("tokenizer_config.json: 'eos_token' is missing", LoadError(_ => { }, c => c.Remove("eos_token")));
        Assert.StartsWith("tokenizer_config.json: 'chat_template' is not a layout ChatForge knows",
            LoadError(_ => { }, c => c["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"));
        Assert.Equal("tokenizer_config.json: 'chat_template' writes <|start_header_id|>, which is not a special token of tokenizer.json",
            LoadError(o => o["added_tokens"]!.AsArray().RemoveAt(6)));
    }
}
