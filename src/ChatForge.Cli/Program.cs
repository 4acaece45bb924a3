return ChatForge.Cli.CliApp.Run(args);
