using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>In-process hosts' network: each message is handed to its receiver on the sending thread (the
/// receiver may run a pass there); snapshots are never sent.</summary>
internal sealed class InProcessPeerNetwork : IPeerNetwork
{
    public Dictionary<NodeId, RaftHost> Hosts { get; } = [];

    public void Send(Message message)
    {
        if (Hosts.TryGetValue(message.To, out var to))
        {
            to.Deliver(message);
        }
    }

    public void SendSnapshot(Message header, Stream stored) => stored.Dispose();

    public void SetPeer(NodeId id, string address)
    {
    }

    public void RemovePeer(NodeId id)
    {
    }
}
