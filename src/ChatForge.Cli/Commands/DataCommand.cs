using ChatForge.Data;

namespace ChatForge.Cli.Commands;

public static class DataCommand
{
    public static int Run(string[] args, Ui ui)
    {
        if (args.Length == 0 || args[0] != "fetch") throw new ChatForgeException("usage: chatforge data fetch [--cache DIR] [--tarball FILE]");
        var a = new Args(args[1..], new[] { "cache", "tarball" });
        var corpora = Corpora.Fetch(a.Get("cache"), a.Get("tarball"), ui.Log);
        ui.Out.WriteLine(corpora.Root);
        return 0;
    }
}
