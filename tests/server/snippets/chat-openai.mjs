// The same chat turn with the official openai client (npm install openai), streamed.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: (process.env.NCAS_URL || 'http://127.0.0.1:8080') + '/v1',
  apiKey: process.env.NCAS_API_KEY || 'none',  // ncas serve --api-key KEY checks it
});
const stream = await client.chat.completions.create({
  model: 'demo-q8_0',  // the name GET /v1/models lists: the file name, or --alias
  messages: [
    { role: 'system', content: 'A short story.' },
    { role: 'user', content: 'Tell me about the river.' },
  ],
  max_tokens: 32,
  temperature: 0,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
process.stdout.write('\n');
