using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Checkpoints;

public class HfReferenceTests
{
    /// <summary>
    /// tests/hf_reference/gpt2_reference.py reads our files as transformers' GPT2LMHeadModel does (Conv1D
    /// x·W + b with W [in, out], tied lm_head, gelu_new) in plain Python; its logits must equal ours.
    /// (transformers itself needs torch, which this machine lacks; a GPU machine with transformers
    /// would run `GPT2LMHeadModel.from_pretrained(dir)` on the same files.)
    /// </summary>
    [Fact]
    public void An_independent_huggingface_style_reader_gets_the_same_logits()
    {
        using var d = new TempDir();
        manual_seed(21);
        var m = new Gpt(new GptConfig { VocabSize = 259, NPositions = 16, NEmbd = 16, NLayer = 2, NHead = 2, BosTokenId = 256, EosTokenId = 256 });
        using (no_grad()) foreach (var p in m.parameters()) p.add_(randn_like(p) * 0.05); // non-trivial biases and LayerNorms
        HfCheckpoint.Write(d.Path, m, new ByteTokenizer());
        var ids = new[] { 72, 101, 108, 108, 111 };
        var reference = PythonReference.LastLogits("gpt2_reference.py", d.Path, ids);
        m.eval();
        using var _ = no_grad();
        var ours = m.call(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0))[0, -1].data<float>().ToArray();
        Assert.Equal(259, reference.Length);
        for (int i = 0; i < ours.Length; i++) Assert.Equal(reference[i], ours[i], 3);
    }
}
