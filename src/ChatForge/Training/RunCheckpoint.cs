using ChatForge.Checkpoints;
using ChatForge.Util;
using TorchSharp.Modules;

namespace ChatForge.Training;

/// <summary>
/// The resumable checkpoint of a run, written once for every trainer: model/ holds the weights (Hugging
/// Face layout) and training_state/ (optimizer moments, RNG, step), swapped in as one directory so a kill
/// at any moment leaves either the previous checkpoint or the new one, never a mix.
/// </summary>
public static class RunCheckpoint
{
    /// <summary>Writes <paramref name="saveModel"/>'s files and the training state into run/model/, atomically.</summary>
    public static void Save(RunDirectory run, Action<string> saveModel, TrainingState state, OptimizerHelper? optimizer, OptimizerHelper? second = null) =>
        AtomicFile.ReplaceDirectory(run.ModelDir, dir =>
        {
            saveModel(dir);
            state.Save(Path.Combine(dir, TrainingState.DirName), optimizer, second);
        });

    /// <summary>The state of run/model/ with the optimizers' moments and the RNG restored.</summary>
    public static TrainingState Load(RunDirectory run, OptimizerHelper? optimizer, OptimizerHelper? second = null) =>
        TrainingState.Load(run.StateDir, optimizer, second);
}
