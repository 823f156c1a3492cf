-- Schema 1.1's token details (spanline/contract/schema.py TOKEN_DETAIL_FIELDS): parts of the 1.0
-- counts that price lists charge at their own rate. Cache writes by time-to-live (Anthropic's
-- 1-hour writes cost 2x the base input rate, its 5-minute ones 1.25x), and audio and image tokens
-- of input (cached reads of them included) and output. Rows stored before this migration read 0,
-- which is what a span without the details means: priced as the count each detail is part of.
-- The rollups keep the 1.0 counts only; their cost sums already include what these classes cost.
ALTER TABLE ${database}.spans
    ADD COLUMN IF NOT EXISTS cache_write_5m_tokens UInt32 DEFAULT 0 AFTER reasoning_tokens,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt32 DEFAULT 0 AFTER cache_write_5m_tokens,
    ADD COLUMN IF NOT EXISTS input_audio_tokens UInt32 DEFAULT 0 AFTER cache_write_1h_tokens,
    ADD COLUMN IF NOT EXISTS cache_audio_read_tokens UInt32 DEFAULT 0 AFTER input_audio_tokens,
    ADD COLUMN IF NOT EXISTS input_image_tokens UInt32 DEFAULT 0 AFTER cache_audio_read_tokens,
    ADD COLUMN IF NOT EXISTS cache_image_read_tokens UInt32 DEFAULT 0 AFTER input_image_tokens,
    ADD COLUMN IF NOT EXISTS output_audio_tokens UInt32 DEFAULT 0 AFTER cache_image_read_tokens,
    ADD COLUMN IF NOT EXISTS output_image_tokens UInt32 DEFAULT 0 AFTER output_audio_tokens;
