// Hosts Garnet with its default settings, for bench/compare.sh's RESP section. The command line goes to Garnet
// unchanged (compare.sh passes only --bind and --port); the process serves until it is killed.
using Garnet;

try
{
    using var server = new GarnetServer(args);
    server.Start();
    Console.WriteLine("garnet-host: serving");
    await Task.Delay(Timeout.Infinite);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException)
{
    Console.Error.WriteLine("garnet-host: " + e.Message);
    return 1;
}

return 0;
