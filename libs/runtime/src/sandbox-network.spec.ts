import { sandboxRules, stepHosts, stepNameservers, stepResolvConf } from './sandbox-network';

describe('sandbox network files and rules', () => {
  it('refuses the host addresses, link-local and the slirp subnet but DNS, and keeps lo', () => {
    const rules = sandboxRules({ hostAddresses: ['192.0.2.2', '198.51.100.7'], nameservers: ['10.0.2.3'] });
    const lines = rules.split('\n');
    expect(lines[0]).toBe('*filter');
    expect(lines).toContain('COMMIT');
    const lo = lines.indexOf('-A OUTPUT -o lo -j ACCEPT');
    const dns = lines.indexOf('-A OUTPUT -d 10.0.2.3/32 -p udp --dport 53 -j ACCEPT');
    const subnet = lines.indexOf('-A OUTPUT -d 10.0.2.0/24 -p tcp -j REJECT --reject-with tcp-reset');
    // order is the policy: loopback first, then DNS on the forwarder, then the refusals
    expect(lo).toBeGreaterThan(0);
    expect(dns).toBeGreaterThan(lo);
    expect(subnet).toBeGreaterThan(dns);
    for (const cidr of ['169.254.0.0/16', '192.0.2.2/32', '198.51.100.7/32']) {
      expect(lines).toContain(`-A OUTPUT -d ${cidr} -p tcp -j REJECT --reject-with tcp-reset`);
      expect(lines).toContain(`-A OUTPUT -d ${cidr} -j REJECT --reject-with icmp-admin-prohibited`);
    }
  });

  it("uses the host's upstream nameservers unless they are loopback, link-local or the host's own", () => {
    const hosts = ['192.0.2.2'];
    expect(stepNameservers('nameserver 10.255.255.53\nnameserver 1.1.1.1\n', hosts)).toEqual([
      '10.255.255.53',
      '1.1.1.1',
    ]);
    expect(stepNameservers('nameserver 127.0.0.53\n', hosts)).toEqual(['10.0.2.3']);
    expect(stepNameservers('nameserver 169.254.169.253\nnameserver 192.0.2.2\n', hosts)).toEqual([
      '10.0.2.3',
    ]);
    expect(stepNameservers('nameserver ::1\nnameserver fe80::1%eth0\n', hosts)).toEqual(['10.0.2.3']);
    expect(stepNameservers('', hosts)).toEqual(['10.0.2.3']);
  });

  it('writes resolv.conf with the search and options lines, and hosts with the hostname', () => {
    expect(stepResolvConf('nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n', ['10.0.2.3'])).toBe(
      'nameserver 10.0.2.3\nsearch corp.example\noptions edns0\n',
    );
    expect(stepHosts('stratum', '10.0.2.100')).toBe(
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.100\tstratum\n',
    );
  });
});
