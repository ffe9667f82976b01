#!/usr/bin/env python3
"""Splits one process's samples in a `perf record -a -g` file into the stages of a request (inclusive: a sample
counts for every stage whose frame is on its stack), then lists its hottest frames by self time.

    bench/profile-summary.py ROW.data PID [top]
"""
import collections
import re
import subprocess
import sys

STAGES = [
    ('socket send (incl. loopback delivery to the peer)', r' __send |__sys_sendto'),
    ('socket receive', r'__libc_recv|__sys_recvfrom'),
    ('epoll_wait', r'epoll_wait'),
    ('thread-pool idle spinning (sched_yield, semaphore wait)', r'sched_yield|LowLevelLifoSemaphore::Wait'),
    ('GC and runtime native code (libcoreclr, self)', None),
    ('WAL save (write + fdatasync)', r'WriteAheadLog::Save'),
    ('Raft loop: NodeDriver.Process', r'NodeDriver::Process'),
    ('  apply (NodeDriver.ApplyEntry)', r'NodeDriver::ApplyEntry'),
    ('  status publishing (NodeDriver.PublishStatus)', r'PublishStatus'),
    ('cache lookups (CacheStateMachine Get/TryGet, self)', r'^SELF:.*CacheStateMachine::(Get|TryGet)\('),
    ('access recording (AccessRecorder.Record)', r'AccessRecorder::Record'),
    ('RESP connection (parse, execute, reply: incl.)', r'RespConnection\+<RunAsync>'),
    ('  RESP parser', r'RespParser::'),
    ('Kestrel request processing (incl. the app)', r'HttpProtocol\+<ProcessRequests>'),
    ('  the app\'s middleware and endpoint (incl.)', r'Program\+<>c\+<<RunAsync>|HttpApi::RefuseBadRequests'),
    ('    routing (EndpointRoutingMiddleware, incl.)', r'EndpointRoutingMiddleware'),
    ('    the /v1/kv handlers (incl.)', r'HttpApi::(ServeKv|GetKey|PutKey|DeleteKey|GetConfirmed|AnswerEntry)'),
    ('peer transport send (PeerSender)', r'PeerSender'),
    ('peer transport receive (InboundSession)', r'InboundSession'),
    ('OpenTelemetry metric recording', r'OpenTelemetry\.Metrics'),
]


def samples(data):
    out = subprocess.run(['perf', 'script', '-i', data, '-F', 'comm,pid,tid,ip,sym,dso'],
                         capture_output=True, text=True, check=True).stdout
    current = None
    for line in out.split('\n'):
        if not line.strip():
            if current:
                yield current
            current = None
        elif not line.startswith((' ', '\t')):
            m = re.match(r'\s*(.*?)\s+(\d+)/(\d+)\s*$', line)
            current = (int(m.group(2)), []) if m else None
        elif current is not None:
            frame = line.strip().split(' ', 1)
            current[1].append(frame[1] if len(frame) > 1 else '?')
    if current:
        yield current


def main():
    data, pid = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    everything = list(samples(data))
    mine = [stack for p, stack in everything if p == pid]
    n = max(len(mine), 1)
    print(f'  {len(mine)} of {len(everything)} samples ({100 * len(mine) / max(len(everything), 1):.0f}% of the machine)')
    for name, pattern in STAGES:
        if pattern is None:
            count = sum(1 for s in mine if s and 'libcoreclr' in s[0])
        elif pattern.startswith('^SELF:'):
            rx = re.compile(pattern[6:])
            count = sum(1 for s in mine if s and rx.search(s[0] + ' '))
        else:
            rx = re.compile(pattern)
            count = sum(1 for s in mine if any(rx.search(f) for f in s))
        print(f'  {100 * count / n:5.1f}%  {name}')
    hottest = collections.Counter(re.sub(r'\+0x[0-9a-f]+', '', s[0]) for s in mine if s)
    print('  hottest frames (self):')
    for frame, count in hottest.most_common(top):
        print(f'    {100 * count / n:5.1f}%  {frame[:140]}')


if __name__ == '__main__':
    main()
