namespace Stcache.Simulation.Sim;

/// <summary>A safety or liveness property the simulator checks was broken.</summary>
public sealed class SimulationFailureException : Exception
{
    public SimulationFailureException(string message)
        : base(message)
    {
    }

    public SimulationFailureException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
