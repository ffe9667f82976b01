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
