namespace ChatForge.Training;

/// <summary>nanoGPT's get_lr: linear warmup, then cosine decay to min_lr at decay_steps, then min_lr.</summary>
public static class LrSchedule
{
    public static double At(long step, double maxLr, double minLr, long warmupSteps, long decaySteps)
    {
        if (step < warmupSteps) return maxLr * (step + 1) / (warmupSteps + 1);
        if (step >= decaySteps) return minLr;
        double ratio = (double)(step - warmupSteps) / Math.Max(1, decaySteps - warmupSteps);
        double coeff = 0.5 * (1.0 + Math.Cos(Math.PI * ratio)); // 1 → 0
        return minLr + coeff * (maxLr - minLr);
    }
}
