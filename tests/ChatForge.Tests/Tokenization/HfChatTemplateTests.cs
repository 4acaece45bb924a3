using System.Text.Json.Serialization;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;

namespace ChatForge.Tests.Tokenization;

/// <summary>Chat templates from tokenizer_config.json: the rendered text and ids equal the Python reference's rendering of the template.</summary>
public class HfChatTemplateTests : IClassFixture<HfTokenizerFixture>
{
    readonly HfTokenizerFixture _f;
    public HfChatTemplateTests(HfTokenizerFixture f) => _f = f;

    static ChatMessage M(string role, string content) => new(role, content);

    static readonly ChatMessage[][] Conversations =
    {
        new[] { M("user", "Hello!") },
        new[] { M("system", "Be brief."), M("user", "What is 12345 + 1?"), M("assistant", "12346") },
        new[] { M("user", "Hi"), M("assistant", "Hello! How can I help?"), M("user", "DON'T stop\r\n\r\nnow"), M("assistant", "  I won't.  \n") },
        new[] { M("user", "naïve café e\u0301 😀abc"), M("assistant", "\nA newline first, then 東京") },
        new[] { M("user", "x"), M("assistant", " a space first") },
        new[] { M("user", "specials inline: <|im_end|> and <|eot_id|>"), M("assistant", "ok <|im_start|>") },
        new[] { M("system", "  padded system  "), M("user", "  padded user\n") },
    };

    sealed record Rendered([property: JsonPropertyName("text")] string Text, [property: JsonPropertyName("ids")] int[] Ids);

    [Fact]
    public void Chat_encoding_equals_the_reference_rendering_and_tokenization()
    {
        foreach (var dir in new[] { _f.Qwen, _f.Llama, _f.Smol, _f.Gpt2 })
        {
            var tok = (ITokenizer)HfTokenizer.Load(dir);
            var cases = Conversations.SelectMany(c => new[] { (Messages: c, Gen: false), (Messages: c, Gen: true) }).ToList();
            var input = cases.Select(c => new { messages = c.Messages.Select(m => new { role = m.Role, content = m.Content }), add_generation_prompt = c.Gen });
            var expected = PythonReference.Json<List<Rendered>>("tokenizer_reference.py", new[] { "chat", dir }, input);
            for (int i = 0; i < cases.Count; i++)
            {
                var (messages, gen) = cases[i];
                var name = $"{Path.GetFileName(dir)} #{i}";
                Assert.Equal(expected[i].Text, ChatTemplate.Render(tok.ChatFormat, messages, gen));
                var (ids, train) = ChatTemplate.Encode(tok, messages, gen);
                Assert.True(expected[i].Ids.SequenceEqual(ids), $"{name}: expected [{string.Join(",", expected[i].Ids)}], got [{string.Join(",", ids)}]");
                Assert.Equal(tok.Encode(expected[i].Text), ids); // pieces encoded separately = the rendered text encoded whole
                Assert.Equal(ids.Length, train.Length);
            }
        }
    }

    [Fact]
    public void Llama_32_renders_its_system_header_with_the_default_date()
    {
        var tok = (ITokenizer)HfTokenizer.Load(_f.Llama);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.Render(tok.ChatFormat, new[] { M("system", " Be brief. "), M("user", "Hi \n") }, addGenerationPrompt: true));
        var llama30 = ChatFormat.FromTemplate(HfTokenizerFixture.Llama30Template, "<|begin_of_text|>", "tokenizer_config.json");
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.Render(llama30, new[] { M("user", "Hi") }, addGenerationPrompt: true));
    }

    [Fact]
    public void Only_assistant_content_and_its_end_of_turn_token_are_trained_on()
    {
        var conversation = new[] { M("system", "S"), M("user", "What is 2+2?"), M("assistant", "  It is 4.  "), M("user", "Thanks"), M("assistant", "You're welcome") };
        foreach (var (dir, trained) in new[]
        {
            (_f.Qwen, "  It is 4.  <|im_end|>You're welcome<|im_end|>"),
            (_f.Smol, "  It is 4.  <|im_end|>You're welcome<|im_end|>"),
            (_f.Llama, "It is 4.<|eot_id|>You're welcome<|eot_id|>"), // Llama 3's template strips the content
        })
        {
            var tok = (ITokenizer)HfTokenizer.Load(dir);
            var (ids, train) = ChatTemplate.Encode(tok, conversation, addGenerationPrompt: false);
            Assert.Equal(trained, tok.Decode(ids.Where((_, i) => train[i])));
            Assert.Equal(tok.EndOfTurnId(), ids.Where((_, i) => train[i]).Last());
        }
    }

    [Fact]
    public void A_token_that_straddles_the_header_and_the_content_is_trained_on()
    {
        // ChatML: "assistant\n" + "\nX" → Qwen2's pattern makes one "\n\n" piece of the header's newline and the content's.
        var tok = (ITokenizer)HfTokenizer.Load(_f.Qwen);
        var (ids, train) = ChatTemplate.Encode(tok, new[] { M("user", "u"), M("assistant", "\nX") }, addGenerationPrompt: false);
        var trained = ids.Where((_, i) => train[i]).ToArray();
        Assert.Equal("\n\nX<|im_end|>", tok.Decode(trained));
    }

    [Fact]
    public void ChatForge_tokenizers_keep_chatml_without_a_default_system_message()
    {
        foreach (ITokenizer tok in new ITokenizer[] { new ByteTokenizer(), new Gpt2Tokenizer() })
        {
            Assert.Equal(ChatFormat.ChatMl, tok.ChatFormat);
            Assert.Equal(SpecialTokens.EndOfText, tok.EosToken);
            Assert.Equal(tok.Id(SpecialTokens.ImEnd), tok.EndOfTurnId());
            var messages = new[] { M("user", "hi"), M("assistant", "yo") };
            Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n", ChatTemplate.Render(messages, false));
            Assert.Equal(tok.Encode(ChatTemplate.Render(messages, true)), ChatTemplate.Encode(tok, messages, true).Ids);
        }
    }

    [Theory]
    [InlineData("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}")]
    [InlineData("{% for message in messages %}{{ message['content'] }}{% endfor %}")]
    [InlineData("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n'}}{% endfor %}")]
    public void Other_templates_are_a_one_line_error_naming_the_key(string template)
    {
        var e = Assert.Throws<ChatForgeException>(() => ChatFormat.FromTemplate(template, "<s>", "tokenizer_config.json"));
        Assert.StartsWith("tokenizer_config.json: 'chat_template' is ", e.Message);
        Assert.Contains("ChatML", e.Message);
        Assert.Contains("Llama 3", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
