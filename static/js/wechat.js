// WeChat's JS-SDK inside WeChat: loaded from WeChat's own host and configured with the
// server's signature (GET /api/v1/wechat/jssdk, docs/wechat_pay.md "JS-SDK"), for the
// APIs a page asks for (商家转账's requestMerchantTransfer). Outside WeChat: null.

const SDK_URL = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js";
let loading = null;

export function inWeChat() {
  return /MicroMessenger/i.test(navigator.userAgent);
}

function loadScript() {
  if (window.wx) return Promise.resolve(window.wx);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = SDK_URL;
    script.onload = () => (window.wx ? resolve(window.wx) : reject(new Error("no wx")));
    script.onerror = () => { loading = null; reject(new Error("微信 JS-SDK 加载失败")); };
    document.head.append(script);
  });
  return loading;
}

/** The configured ``wx`` for ``jsApiList`` (and the open tags of ``openTagList``, such
 * as wx-open-subscribe), or null outside WeChat. */
export async function wechatSdk(kpay, jsApiList, openTagList = []) {
  if (!inWeChat()) return null;
  const url = location.href.split("#")[0];
  // The signature first: a server that cannot sign (no wechat_pay plugin: 404) costs no
  // SDK download.
  const config = await kpay.get(`/api/v1/wechat/jssdk?url=${encodeURIComponent(url)}`);
  const wx = await loadScript();
  await new Promise((resolve, reject) => {
    wx.config({ debug: false, ...config, jsApiList, openTagList });
    wx.ready(resolve);
    wx.error((result) => reject(new Error(result?.errMsg || "wx.config failed")));
  });
  return wx;
}
