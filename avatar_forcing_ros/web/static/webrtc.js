// Shared by viewer.html and operator.html: one WebRTC session with the web_display node that
// reconnects by itself (2 s after a drop), and in-page measurements exposed as window.afStats.
'use strict';

async function afConnect(role, setup, onState) {
  // setup(pc) adds the transceivers; returns nothing. Resolves with the connected pc.
  const nonceReply = await fetch('/api/nonce', {credentials: 'same-origin'});
  if (nonceReply.status === 401) { location.reload(); throw new Error('session expired'); }
  const {nonce} = await nonceReply.json();
  const pc = new RTCPeerConnection();
  setup(pc);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {   // send the offer with its candidates (no trickle)
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
    setTimeout(resolve, 2000);
  });
  const reply = await fetch('/api/offer', {
    method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: 'offer', role, nonce}),
  });
  if (!reply.ok) { pc.close(); throw new Error((await reply.json()).error || reply.statusText); }
  await pc.setRemoteDescription(await reply.json());
  pc.addEventListener('connectionstatechange', () => onState(pc.connectionState));
  return pc;
}

function afKeepConnected(role, setup, onTrack, showState) {
  // Connect, and connect again whenever the session fails or closes.
  let pc = null;
  let retry = null;
  const again = (why) => {
    showState('reconnecting (' + why + ')');
    if (pc) { pc.close(); pc = null; }
    clearTimeout(retry);
    retry = setTimeout(start, 2000);
  };
  async function start() {
    try {
      pc = await afConnect(role, (p) => { p.addEventListener('track', onTrack); setup(p); }, (state) => {
        showState(state);
        if (state === 'failed' || state === 'closed' || state === 'disconnected') again(state);
      });
      window.afPeer = pc;
    } catch (error) { again(error.message); }
  }
  start();
}

// ---- measurements: frames painted (requestVideoFrameCallback), a marker square's flashes and
// the audio's beeps (WebAudio), for the test pattern of test_web_display_browser.py
const afStats = window.afStats = {frames: 0, firstFrameAt: null, lastFrameAt: null,
                                  markers: [], beeps: [], latencies: [], width: 0, height: 0};
const CODE_BITS = 24;   // test pattern: media time (ms mod 2^24) in the bottom row's 16-px cells

function afMeasureVideo(video) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 8;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const strip = document.createElement('canvas');
  strip.width = CODE_BITS * 16; strip.height = 16;
  const stripCtx = strip.getContext('2d', {willReadFrequently: true});
  // Reading frames back costs the page CPU on every frame (a kiosk on the robot must not pay it):
  // only test and benchmark pages (?measure=1) do; every page counts the frames painted.
  const measure = new URLSearchParams(location.search).get('measure') === '1';
  let bright = false;
  const onFrame = (now, meta) => {
    afStats.frames += 1;
    afStats.width = meta.width; afStats.height = meta.height;
    if (afStats.firstFrameAt === null) afStats.firstFrameAt = now;
    afStats.lastFrameAt = now;
    if (!measure) {
      video.requestVideoFrameCallback(onFrame);
      return;
    }
    // marker: the top-left 1/16 of the frame, white in marker frames, dark otherwise
    ctx.drawImage(video, 0, 0, video.videoWidth / 16, video.videoHeight / 16, 0, 0, 8, 8);
    const px = ctx.getImageData(0, 0, 8, 8).data;
    let sum = 0;
    for (let i = 0; i < px.length; i += 4) sum += px[i + 1];
    const level = sum / (px.length / 4);
    if (!bright && level > 160) afStats.markers.push(meta.expectedDisplayTime || now);
    bright = level > 100 ? (bright || level > 160) : false;
    if (meta.height === 512) {   // media time -> painted (wall clock, ms)
      stripCtx.drawImage(video, 0, 512 - 16, CODE_BITS * 16, 16, 0, 0, CODE_BITS * 16, 16);
      const row = stripCtx.getImageData(0, 8, CODE_BITS * 16, 1).data;
      let code = 0;
      for (let bit = 0; bit < CODE_BITS; bit++) code = code * 2 + (row[(bit * 16 + 8) * 4 + 1] > 128 ? 1 : 0);
      const painted = performance.timeOrigin + (meta.expectedDisplayTime || now);
      const latency = ((painted % 16777216) - code + 16777216) % 16777216;
      if (latency < 10000) afStats.latencies.push(latency);   // else a misread code (a frame in transition)
      else afStats.misread = (afStats.misread || 0) + 1;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// Beep onsets on the audio rendering thread (AudioWorklet): the context time of the first loud
// sample, mapped to the page's clock at which that sample is heard (getOutputTimestamp), to
// compare with requestVideoFrameCallback's expectedDisplayTime of the marker frames. The worklet
// posts onsets only (one a second), not a message per 128-sample quantum (375 a second), which
// would keep the page's main thread busy under the frames it measures.
const ONSET_WORKLET = `
class Onset extends AudioWorkletProcessor {
  constructor() { super(); this.loud = false; this.quiet = 0; }
  process(inputs) {
    const data = inputs[0][0];
    if (!data) return true;
    let onset = -1;
    for (let i = 0; i < data.length && onset < 0; i++) if (Math.abs(data[i]) > 0.2) onset = i;
    if (!this.loud && onset >= 0) this.port.postMessage({onset: currentTime + onset / sampleRate});
    if (onset >= 0) { this.loud = true; this.quiet = 0; } else if (++this.quiet > 20) this.loud = false;
    return true;
  }
}
registerProcessor('onset', Onset);`;

async function afMeasureAudio(stream) {
  const context = new AudioContext();
  const url = URL.createObjectURL(new Blob([ONSET_WORKLET], {type: 'application/javascript'}));
  await context.audioWorklet.addModule(url);
  const detector = new AudioWorkletNode(context, 'onset');
  detector.port.onmessage = (event) => {
    const stamp = context.getOutputTimestamp();
    afStats.beeps.push(stamp.performanceTime + (event.data.onset - stamp.contextTime) * 1000);
  };
  context.createMediaStreamSource(stream).connect(detector);
  detector.connect(context.destination);
  await context.resume();
  return context;
}
