using System.Diagnostics;

namespace ChatForge.Tests.Support;

/// <summary>Runs the chatforge CLI, in-process (fast) or as a real child process (for kill tests).</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = ChatForge.Cli.CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>The CLI as a child process (its dll sits beside the test assembly).</summary>
    public static Process Start(params string[] args)
    {
        var dll = System.IO.Path.Combine(AppContext.BaseDirectory, "ChatForge.Cli.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }
}
