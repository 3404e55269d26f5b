namespace Research.Data;

/// <summary>
/// Encodes a sequence of (text, trained) pieces, e.g. a rendered chat with the assistant's answers trained, into the
/// ids of the whole concatenated text with a per-id train flag.
/// <para>The text is split at added tokens (leftmost, longest content first), which the tokenizer never merges with
/// their neighbours: each becomes its id, flagged by the piece it lies in. A text segment between added tokens is
/// encoded whole; where a piece boundary falls inside it, the segment's part up to the boundary is encoded as well and
/// is normally a prefix of the whole segment's ids (the tokens before the boundary take the earlier piece's flag), as at
/// the usual template boundaries ("...assistant\n" | "answer"). Where a token spans the boundary (a merge across it:
/// "[/INST]" | "{...}" gives "]{" in SentencePiece), that one token counts for both sides and is trained when either is,
/// as transformers' assistant-token mask marks it. An added token cut by a boundary throws.</para>
/// <para>Finally the concatenated ids are checked against the encoding of the whole text (they can differ when an
/// added token strips its neighbouring spaces, lstrip/rstrip, or is matched differently from the plain search here);
/// a difference throws, so the result is always exactly <c>tokenizer.Encode(whole)</c>.</para>
/// </summary>
public static class HfPieces
{
    public static SftTokens Encode(HfTokenizer tokenizer, IReadOnlyList<(string Text, bool Trained)> pieces)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(pieces);
        var whole = string.Concat(pieces.Select(p => p.Text));
        var ends = new int[pieces.Count];
        for (int i = 0, at = 0; i < pieces.Count; i++) ends[i] = at += pieces[i].Text.Length;
        bool TrainedAt(int position)
        {
            for (var i = 0; i < ends.Length; i++) if (position < ends[i]) return pieces[i].Trained;
            return false;
        }

        var ids = new List<int>();
        var trained = new List<bool>();
        foreach (var (start, end, added) in Segments(whole, tokenizer.AddedTokens))
        {
            var cuts = ends.Where(e => e > start && e < end).Distinct().ToArray();
            if (added is { } id)
            {
                if (cuts.Length > 0)
                    throw new TokenizerException($"piece boundary at character {cuts[0]} cuts the added token \"{whole[start..end]}\"; end pieces before or after it");
                ids.Add(id); trained.Add(TrainedAt(start));
                continue;
            }
            var segment = tokenizer.Encode(whole[start..end]);
            var from = 0;
            var regionStart = start;
            foreach (var cut in cuts)
            {
                var head = tokenizer.Encode(whole[start..cut]);
                if (head.Length >= from && head.Length <= segment.Length && segment.AsSpan(0, head.Length).SequenceEqual(head))
                {
                    Add(segment, from, head.Length, TrainedAt(regionStart));
                    from = head.Length;
                }
                else
                {
                    // A token spans the boundary (SentencePiece merges "]{" in "[/INST]{..."): as transformers' assistant mask
                    // (char_to_token at the span's ends), the token holding the boundary belongs to both sides, so it is
                    // trained when either is. Where it lies is found from decoded lengths.
                    var straddle = Straddling(tokenizer, segment, whole[start..end], cut - start, from)
                        ?? throw new TokenizerException(
                            $"piece boundary at character {cut} (between \"{Tail(whole[..cut])}\" and \"{Head(whole[cut..])}\") falls inside a token that could not be located: the text before it does not encode to a prefix of the ids of \"{Head(whole[start..end])}\"");
                    Add(segment, from, straddle, TrainedAt(regionStart));
                    Add(segment, straddle, straddle + 1, TrainedAt(regionStart) || TrainedAt(cut));
                    from = straddle + 1;
                }
                regionStart = cut;
            }
            Add(segment, from, segment.Length, TrainedAt(regionStart));
        }

        var expected = tokenizer.Encode(whole);
        if (!expected.AsSpan().SequenceEqual(ids.ToArray()))
        {
            var at = 0;
            while (at < Math.Min(expected.Length, ids.Count) && expected[at] == ids[at]) at++;
            throw new TokenizerException(
                $"pieces split at added tokens encode to {ids.Count} ids but the whole text to {expected.Length}, first differing at id {at}: the split is not faithful for this tokenizer and text");
        }
        return new SftTokens(ids.ToArray(), trained.ToArray());

        void Add(int[] segment, int from, int to, bool train)
        {
            for (var i = from; i < to; i++) { ids.Add(segment[i]); trained.Add(train); }
        }
    }

    /// <summary>
    /// The index (≥ <paramref name="from"/>) of the token of <paramref name="segment"/> (the ids of <paramref name="text"/>) that
    /// covers character <paramref name="offset"/> − 1 and reaches past it: the first n whose prefix ids decode to at least
    /// <paramref name="offset"/> characters (measured against the whole segment's decoding, which may differ from the text by
    /// a leading space). Null when the lengths do not place one.
    /// </summary>
    static int? Straddling(HfTokenizer tokenizer, int[] segment, string text, int offset, int from)
    {
        var shift = tokenizer.DecodeWithSpecial(segment).Length - text.Length;
        int Length(int n) => tokenizer.DecodeWithSpecial(segment[..n]).Length - shift;
        int lo = from + 1, hi = segment.Length;
        if (lo > hi || Length(hi) < offset) return null;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (Length(mid) >= offset) hi = mid; else lo = mid + 1;
        }
        return lo - 1;
    }

    /// <summary>The text cut into added tokens (with their id) and the plain runs between them.</summary>
    public static IEnumerable<(int Start, int End, int? Added)> Segments(string text, IReadOnlyDictionary<string, int> added)
    {
        var tokens = added.Keys.Where(k => k.Length > 0).OrderByDescending(k => k.Length).ToArray();
        var plainStart = 0;
        var i = 0;
        while (i < text.Length)
        {
            string? match = null;
            foreach (var t in tokens)
                if (t[0] == text[i] && i + t.Length <= text.Length && string.CompareOrdinal(text, i, t, 0, t.Length) == 0) { match = t; break; }
            if (match is null) { i++; continue; }
            if (i > plainStart) yield return (plainStart, i, null);
            yield return (i, i + match.Length, added[match]);
            i += match.Length;
            plainStart = i;
        }
        if (text.Length > plainStart) yield return (plainStart, text.Length, null);
    }

    static string Head(string s) => s.Length <= 20 ? s : s[..20] + "...";
    static string Tail(string s) => s.Length <= 20 ? s : "..." + s[^20..];
}
