"""Operations: what the people who run leadflow see of it (metrics now; traces and logs next)."""
