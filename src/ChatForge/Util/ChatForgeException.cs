namespace ChatForge;

/// <summary>
/// An error caused by the user's input (a file, a line, a key, a flag). The CLI prints its message as
/// one line after "error:" and exits non-zero; the message must say what and where.
/// </summary>
public class ChatForgeException : Exception
{
    public ChatForgeException(string message) : base(message) { }
    public ChatForgeException(string message, Exception inner) : base(message, inner) { }
}
