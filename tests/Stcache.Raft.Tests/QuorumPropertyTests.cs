using CsCheck;
using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// <see cref="Quorum"/> against slow references that never use the n/2+1 formula: a majority is any subset of the
/// voters holding more than half of them, found by enumerating every subset (or every way the unanswered voters
/// could still vote). CsCheck prints the seed of a failure; rerun it with <c>seed: "..."</c> in <c>Sample</c>.
/// </summary>
public sealed class QuorumPropertyTests
{
    private static readonly Gen<ulong[]> s_values = Gen.ULong[0, 20].Array[0, 9];

    [Fact]
    public void MajorityValueIsTheHighestValueEveryMemberOfSomeMajorityReached() =>
        s_values.Sample(values =>
        {
            ulong expected = SlowMajorityValue(values);
            ulong actual = Quorum.MajorityValue(values.ToArray());
            Assert.True(expected == actual, $"values [{string.Join(',', values)}]: expected {expected}, got {actual}");
        }, iter: 2_000);

    [Fact]
    public void VoteResultMatchesEveryWayTheUnansweredVotersCouldVote() =>
        Gen.Int[0, 9].SelectMany(voters => Gen.Int[0, voters].SelectMany(granted => Gen.Int[0, voters - granted].Select(refused => (voters, granted, refused))))
            .Sample(t =>
            {
                var expected = SlowVote(t.voters, t.granted, t.refused);
                var actual = Quorum.Vote(t.voters, t.granted, t.refused);
                Assert.True(expected == actual, $"{t}: expected {expected}, got {actual}");
            }, iter: 2_000);

    [Fact]
    public void IsReachedMeansMoreThanHalf() =>
        Gen.Int[0, 9].SelectMany(voters => Gen.Int[0, voters].Select(count => (voters, count)))
            .Sample(t => Assert.Equal(SlowIsMajority(t.voters, t.count), Quorum.IsReached(t.voters, t.count)), iter: 500);

    [Theory]
    [InlineData(new ulong[] { 5 }, 5UL)]
    [InlineData(new ulong[] { 9, 1, 5 }, 5UL)]
    [InlineData(new ulong[] { 9, 1, 5, 7 }, 5UL)]
    [InlineData(new ulong[] { 3, 3, 8, 8, 8 }, 8UL)]
    [InlineData(new ulong[] { 3, 3, 3, 8, 8 }, 3UL)]
    [InlineData(new ulong[0], 0UL)]
    public void MajorityValueExamples(ulong[] values, ulong expected) => Assert.Equal(expected, Quorum.MajorityValue(values));

    [Fact]
    public void VoteExamples()
    {
        Assert.Equal(VoteResult.Won, Quorum.Vote(1, 1, 0));
        Assert.Equal(VoteResult.Pending, Quorum.Vote(3, 1, 1));
        Assert.Equal(VoteResult.Lost, Quorum.Vote(3, 1, 2));
        Assert.Equal(VoteResult.Pending, Quorum.Vote(4, 2, 1)); // two of four is not a majority
        Assert.Equal(VoteResult.Lost, Quorum.Vote(4, 2, 2));
        Assert.Equal(VoteResult.Lost, Quorum.Vote(0, 0, 0)); // nobody can grant it
    }

    private static bool SlowIsMajority(int voters, int count) => count * 2 > voters;

    /// <summary>Max over every majority subset of the least value in it.</summary>
    private static ulong SlowMajorityValue(ulong[] values)
    {
        ulong best = 0;
        int n = values.Length;
        for (int mask = 1; mask < 1 << n; mask++)
        {
            int size = System.Numerics.BitOperations.PopCount((uint)mask);
            if (!SlowIsMajority(n, size))
            {
                continue;
            }

            ulong least = ulong.MaxValue;
            for (int i = 0; i < n; i++)
            {
                if ((mask & (1 << i)) != 0)
                {
                    least = Math.Min(least, values[i]);
                }
            }

            best = Math.Max(best, least);
        }

        return best;
    }

    /// <summary>Decided only if every way the unanswered voters could still vote gives the same outcome.</summary>
    private static VoteResult SlowVote(int voters, int granted, int refused)
    {
        int unanswered = voters - granted - refused;
        bool canWin = false;
        bool canLose = false;
        for (int mask = 0; mask < 1 << unanswered; mask++)
        {
            int more = System.Numerics.BitOperations.PopCount((uint)mask);
            if (SlowIsMajority(voters, granted + more))
            {
                canWin = true;
            }
            else
            {
                canLose = true;
            }
        }

        return (canWin, canLose) switch
        {
            (true, false) => VoteResult.Won,
            (false, true) => VoteResult.Lost,
            _ => VoteResult.Pending,
        };
    }
}
