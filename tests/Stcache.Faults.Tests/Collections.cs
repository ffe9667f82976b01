namespace Stcache.Faults.Tests;

/// <summary>
/// Tests that start stcached processes run one at a time: on a small machine, two clusters at once would turn
/// timing into noise.
/// </summary>
[CollectionDefinition(Name)]
public sealed class ProcessCollection
{
    public const string Name = "stcached processes";
}

/// <summary>A test that runs only when FAULTS_SOAK_MINUTES is set (the long soak).</summary>
public sealed class SoakFactAttribute : FactAttribute
{
    public SoakFactAttribute()
    {
        if (SoakMinutes is null)
        {
            Skip = "long soak: set FAULTS_SOAK_MINUTES (e.g. 30)";
        }
    }

    public static double? SoakMinutes =>
        double.TryParse(Environment.GetEnvironmentVariable("FAULTS_SOAK_MINUTES"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double minutes) && minutes > 0
            ? minutes
            : null;
}

/// <summary>
/// The short linearizability fault run. It reproduces open bug 6 of docs/FAULTS.md (a linearizable read answered
/// with stale data after member replacement and restarts) in some runs, so it runs only when FAULTS_LINEARIZABILITY
/// is set, until that bug is fixed; the hostile-input tests run always.
/// </summary>
public sealed class KnownBugFactAttribute : FactAttribute
{
    public KnownBugFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("FAULTS_LINEARIZABILITY") is not { Length: > 0 })
        {
            Skip = "open bug 6 in docs/FAULTS.md (stale linearizable reads under member replacement): set FAULTS_LINEARIZABILITY=1 to run";
        }
    }
}
