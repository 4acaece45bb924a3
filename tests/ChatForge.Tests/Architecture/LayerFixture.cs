// A deliberately wrong dependency, for LayerTests.A_planted_upward_reference_is_caught: a "Modeling" type
// that uses a "Training" type, in a namespace of its own so the library's check never sees it.
namespace ChatForge.Tests.LayerFixture.Training
{
    public sealed class TrainerAbove
    {
        public int Steps { get; init; }
    }
}

namespace ChatForge.Tests.LayerFixture.Modeling
{
    public sealed class PlantedUpwardReference
    {
        public int Read(ChatForge.Tests.LayerFixture.Training.TrainerAbove t) => t.Steps;
    }

    public sealed class CleanModelingType
    {
        public int Width { get; init; }
    }
}
