namespace Stcache.Integration.Tests;

/// <summary>A fact that runs only when an environment variable is set, and is reported skipped otherwise.</summary>
public sealed class EnvironmentFactAttribute : FactAttribute
{
    public EnvironmentFactAttribute(string variable)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(variable)))
        {
            Skip = $"set {variable} to run this test";
        }
    }
}
