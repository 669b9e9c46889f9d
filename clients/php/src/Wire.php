<?php

declare(strict_types=1);

namespace Stockd;

/**
 * MessagePack-RPC framing (PROTOCOL §1-2). Internal to the client.
 *
 * Replies are untrusted bytes: frameEnd() finds where one message ends by
 * walking its headers, and refuses a message larger than the limit or nested
 * deeper than the limit before anything is decoded, so a 5-byte header that
 * claims 4 GiB costs nothing. Only then msgpack_unpack() (the php-msgpack
 * extension) decodes the exact slice.
 */
final class Wire
{
    /** Nesting a stockd reply never needs (order record with lines: 4). */
    public const MAX_DEPTH = 32;

    /**
     * `[0, msgid, method, [params]]`. params must be a map: an empty PHP
     * array would pack as an empty array, so it is written as `{}` by hand.
     *
     * @param array<string, mixed> $params
     */
    public static function request(int $msgid, string $method, array $params): string
    {
        $frame = "\x94\x00" . self::uint($msgid) . self::packStr($method) . "\x91";
        if ($params === []) {
            return $frame . "\x80";
        }
        if (array_is_list($params)) {
            throw new \InvalidArgumentException('params must be a map with string keys');
        }
        return $frame . msgpack_pack($params);
    }

    private static function uint(int $v): string
    {
        if ($v < 0x80) {
            return chr($v);
        }
        if ($v <= 0xff) {
            return "\xcc" . chr($v);
        }
        if ($v <= 0xffff) {
            return "\xcd" . pack('n', $v);
        }
        return "\xce" . pack('N', $v);
    }

    private static function packStr(string $s): string
    {
        $n = strlen($s);
        if ($n < 32) {
            return chr(0xa0 | $n) . $s;
        }
        if ($n <= 0xff) {
            return "\xd9" . chr($n) . $s;
        }
        if ($n <= 0xffff) {
            return "\xda" . pack('n', $n) . $s;
        }
        return "\xdb" . pack('N', $n) . $s;
    }

    /**
     * The offset just past the message that starts at $pos in $buf, or -1 when
     * the buffer does not hold all of it yet.
     *
     * @throws ProtocolError malformed (0xc1), larger than $maxBytes, or deeper
     *                       than MAX_DEPTH
     */
    public static function frameEnd(string $buf, int $pos, int $maxBytes): int
    {
        $start = $pos;
        $len = strlen($buf);
        $stack = [1];           // items still to read in each open container
        $depth = 1;
        while (true) {
            while ($depth > 0 && $stack[$depth - 1] === 0) {
                array_pop($stack);
                $depth--;
            }
            if ($depth === 0) {
                return $pos <= $len ? $pos : -1;    // the last item may run past the buffer
            }
            if ($pos >= $len) {
                return -1;
            }
            $stack[$depth - 1]--;
            $t = ord($buf[$pos]);
            $n = 0;             // children of a container
            if ($t <= 0x7f || $t >= 0xe0 || $t === 0xc0 || $t === 0xc2 || $t === 0xc3) {
                $pos += 1;
            } elseif ($t <= 0x8f) {
                $pos += 1;
                $n = 2 * ($t & 0x0f);
            } elseif ($t <= 0x9f) {
                $pos += 1;
                $n = $t & 0x0f;
            } elseif ($t <= 0xbf) {
                $pos += 1 + ($t & 0x1f);
            } else {
                switch ($t) {
                    case 0xcc: case 0xd0: $pos += 2; break;
                    case 0xcd: case 0xd1: $pos += 3; break;
                    case 0xca: case 0xce: case 0xd2: $pos += 5; break;
                    case 0xcb: case 0xcf: case 0xd3: $pos += 9; break;
                    case 0xd4: $pos += 3; break;
                    case 0xd5: $pos += 4; break;
                    case 0xd6: $pos += 6; break;
                    case 0xd7: $pos += 10; break;
                    case 0xd8: $pos += 18; break;
                    case 0xc4: case 0xc7: case 0xd9:     // 8-bit length
                        if ($pos + 2 > $len) {
                            return -1;
                        }
                        $pos += 2 + ord($buf[$pos + 1]) + ($t === 0xc7 ? 1 : 0);
                        break;
                    case 0xc5: case 0xc8: case 0xda:     // 16-bit length
                        if ($pos + 3 > $len) {
                            return -1;
                        }
                        $pos += 3 + unpack('n', $buf, $pos + 1)[1] + ($t === 0xc8 ? 1 : 0);
                        break;
                    case 0xc6: case 0xc9: case 0xdb:     // 32-bit length
                        if ($pos + 5 > $len) {
                            return -1;
                        }
                        $pos += 5 + unpack('N', $buf, $pos + 1)[1] + ($t === 0xc9 ? 1 : 0);
                        break;
                    case 0xdc: case 0xde:
                        if ($pos + 3 > $len) {
                            return -1;
                        }
                        $n = unpack('n', $buf, $pos + 1)[1] * ($t === 0xde ? 2 : 1);
                        $pos += 3;
                        break;
                    case 0xdd: case 0xdf:
                        if ($pos + 5 > $len) {
                            return -1;
                        }
                        $n = unpack('N', $buf, $pos + 1)[1] * ($t === 0xdf ? 2 : 1);
                        $pos += 5;
                        break;
                    default:                             // 0xc1: never used
                        throw new ProtocolError(sprintf('malformed MessagePack from stockd (byte 0x%02x)', $t), 'protocol');
                }
            }
            // Every child takes at least one byte: a count beyond the limit is
            // refused as surely as a length beyond it.
            if ($pos - $start + $n > $maxBytes) {
                throw new ProtocolError("a message from stockd exceeds the client's limit of $maxBytes bytes", 'protocol');
            }
            if ($n > 0) {
                if ($depth >= self::MAX_DEPTH) {
                    throw new ProtocolError('a message from stockd is nested deeper than ' . self::MAX_DEPTH, 'protocol');
                }
                $stack[] = $n;
                $depth++;
            }
        }
    }

    /** @param array<string, mixed> $m */
    public static function str(array $m, string $k): string
    {
        if (!is_string($m[$k] ?? null)) {
            throw new ProtocolError("reply lacks the string '$k'", 'protocol');
        }
        return $m[$k];
    }

    /** @param array<string, mixed> $m */
    public static function int(array $m, string $k): int
    {
        if (!is_int($m[$k] ?? null)) {
            throw new ProtocolError("reply lacks the integer '$k'", 'protocol');
        }
        return $m[$k];
    }

    /** @param array<string, mixed> $m */
    public static function optInt(array $m, string $k): ?int
    {
        return isset($m[$k]) ? self::int($m, $k) : null;
    }

    /** @param array<string, mixed> $m */
    public static function optStr(array $m, string $k): ?string
    {
        return isset($m[$k]) ? self::str($m, $k) : null;
    }
}
