namespace Stcache.Raft;

/// <summary>The outcome of an election as far as the votes received so far decide it.</summary>
public enum VoteResult : byte
{
    /// <summary>Neither a majority for nor a majority against yet.</summary>
    Pending,

    /// <summary>A majority of the voters granted the vote.</summary>
    Won,

    /// <summary>So many voters refused that a majority can no longer be reached.</summary>
    Lost,
}

/// <summary>
/// Majority arithmetic over one set of voters (the core has single-server membership changes, so there is never a
/// second, joint configuration to satisfy). Pure functions: the leader's commit index, an election's result, check-quorum
/// activity and the heartbeat round a majority acknowledged (ReadIndex, leases) are all "the highest value that a
/// majority of voters has reached" or "does a count reach a majority".
/// </summary>
public static class Quorum
{
    /// <summary>How many of <paramref name="voters"/> voters form a majority.</summary>
    public static int Size(int voters)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(voters);
        return (voters / 2) + 1;
    }

    /// <summary>True when <paramref name="count"/> of <paramref name="voters"/> voters is a majority.</summary>
    public static bool IsReached(int voters, int count) => voters > 0 && count >= Size(voters);

    /// <summary>
    /// The highest value that at least a majority of the voters has reached, given one value per voter (the match
    /// index of each, for the commit index; the highest heartbeat round each acknowledged, for reads). Sorts
    /// <paramref name="values"/> in place. No voters: 0.
    /// </summary>
    public static ulong MajorityValue(Span<ulong> values)
    {
        int n = values.Length;
        if (n == 0)
        {
            return 0;
        }

        values.Sort();

        // Ascending: the value at n - Size(n) and every value above it, Size(n) values in all, are at least it.
        return values[n - Size(n)];
    }

    /// <summary>
    /// The election's result given how many of <paramref name="voters"/> voters granted and refused so far (the
    /// others have not answered): won with a majority of grants, lost once the refusals leave no majority possible.
    /// </summary>
    public static VoteResult Vote(int voters, int granted, int refused)
    {
        int size = Size(voters);
        if (granted >= size)
        {
            return VoteResult.Won;
        }

        return voters - refused < size ? VoteResult.Lost : VoteResult.Pending;
    }
}
